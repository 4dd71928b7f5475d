"""``mixed_precision``: a bit-width per layer under a budget (average weight bits, or weight size).

Sensitivity ranking with greedy allocation: for every conv/linear layer and candidate bit-width, the
fidelity drop when that layer *alone* is quantized (round-to-nearest, per channel) is measured on
calibration data as the mean KL divergence of the model's softmax output from the float model's (no
labels needed). Starting from the widest candidate everywhere, the step to the next narrower width
that costs the least sensitivity per weight bit saved is taken until the budget holds. The layers
are then quantized at their widths by ``rtn`` or ``gpfq``. Per-layer sensitivities go to the
manifest (and the HTML report's sensitivity plot).

``method: eqnet`` takes the EQ-Net route instead (docs/algorithms.md §2, ``_eqnet.py``): an elastic
quantizer with its own learned step/offset per (bits, symmetry, granularity), trained as one supernet
with the weight-distribution regulariser and group progressive guidance (``steps`` on the labelled
calibration data, a quarter held back), an accuracy predictor fitted on ``predictor_samples`` measured
configurations, and a genetic search under the average-bits budget; first and last layers stay 8-bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from edgesmith.compress.contract import FloatWeights, WeightGrids
from edgesmith.compress.layers import calibration_batches, forward_batch
from edgesmith.compress.quantize._eqnet import run_eqnet
from edgesmith.compress.quantize._grid import Grid
from edgesmith.compress.quantize._snap import record_grid
from edgesmith.compress.quantize.gpfq import GPFQConfig, quantize_layers
from edgesmith.compress.quantize.rtn import select_layers
from edgesmith.compress.registry import PassInfo
from edgesmith.errors import ConfigError


@dataclass(frozen=True)
class MixedPrecisionConfig:
    average_bits: float | None = 4.0  # budget: mean bits per weight (weighted by layer size)
    size_mb: float | None = None  # or: total weight storage in MB (replaces average_bits when given)
    candidate_bits: tuple[int, ...] = (8, 6, 4, 3, 2)
    quantizer: Literal["rtn", "gpfq"] = "gpfq"
    method: Literal["sensitivity", "eqnet"] = "sensitivity"
    samples: int = 128
    steps: int = 300  # eqnet: supernet training steps
    predictor_samples: int = 64  # eqnet: configurations measured to fit the accuracy predictor
    lr: float = 1e-4  # eqnet
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.candidate_bits or any(not 2 <= b <= 8 for b in self.candidate_bits):
            raise ValueError(f"candidate_bits must be between 2 and 8, got {list(self.candidate_bits)}")
        if self.size_mb is None and self.average_bits is None:
            raise ValueError("give a budget: average_bits or size_mb")
        if self.size_mb is not None and self.size_mb <= 0:
            raise ValueError(f"size_mb must be > 0, got {self.size_mb}")
        if self.size_mb is None and self.average_bits is not None and not min(self.candidate_bits) <= self.average_bits <= 8:
            raise ValueError(f"average_bits {self.average_bits} is outside what candidate_bits {sorted(self.candidate_bits)} can reach")


def sensitivities(model: Any, layers: list[tuple[str, Any]], bits: list[int], ctx: Any, samples: int) -> dict[str, dict[int, float]]:
    """KL(float || one layer quantized at b bits), per layer and width, on calibration data."""
    import torch
    import torch.nn.functional as F

    names = [s.name for s in ctx.input_specs]
    batches = list(calibration_batches(ctx, samples))
    with torch.no_grad():
        ref = [F.log_softmax(_first(forward_batch(model, b, names)).flatten(1).float(), dim=1) for b in batches]
        out: dict[str, dict[int, float]] = {}
        for name, layer in layers:
            w = layer.weight.detach().clone()
            out[name] = {}
            for b in bits:
                layer.weight.copy_(Grid(b, "per-channel", True).fake_quant(w))
                kl = 0.0
                for batch, r in zip(batches, ref):
                    q = F.log_softmax(_first(forward_batch(model, batch, names)).flatten(1).float(), dim=1)
                    kl += float(F.kl_div(q, r, log_target=True, reduction="sum"))
                out[name][b] = kl / sum(len(r) for r in ref)
            layer.weight.copy_(w)
    return out


def _first(y: Any) -> Any:
    return y[0] if isinstance(y, (tuple, list)) else y


def allocate(sizes: dict[str, int], sens: dict[str, dict[int, float]], bits: list[int], budget_bits: float) -> dict[str, int]:
    """Greedy: from the widest width everywhere, narrow the layer whose next step costs the least
    sensitivity per bit saved, until the total weight bits are within ``budget_bits``."""
    widths = sorted(bits, reverse=True)
    choice = {n: widths[0] for n in sizes}
    total = sum(sizes[n] * choice[n] for n in sizes)
    while total > budget_bits + 1e-9:
        best, best_cost = None, None
        for n in sizes:
            i = widths.index(choice[n])
            if i + 1 >= len(widths):
                continue
            nxt = widths[i + 1]
            cost = max(sens[n][nxt] - sens[n][choice[n]], 0.0) / (sizes[n] * (choice[n] - nxt))
            if best_cost is None or cost < best_cost:
                best, best_cost = (n, nxt), cost
        if best is None:
            break
        total -= sizes[best[0]] * (choice[best[0]] - best[1])
        choice[best[0]] = best[1]
    return choice


def mixed_precision(model: Any, cfg: MixedPrecisionConfig, ctx: Any) -> Any:
    import torch

    if ctx.calibration is None:
        raise ConfigError("mixed_precision needs calibration data", hint="add `data: {calibration: {source: digits}}`")
    model.eval()
    layers = select_layers(model, cfg.exclude, ctx, "mixed_precision")
    sizes = {n: m.weight.numel() for n, m in layers}
    n_weights = sum(sizes.values())
    bits = sorted(set(cfg.candidate_bits), reverse=True)
    budget = cfg.size_mb * 8 * 2**20 if cfg.size_mb is not None else cfg.average_bits * n_weights
    if budget < min(bits) * n_weights:
        floor_mb = min(bits) * n_weights / 8 / 2**20
        raise ConfigError(
            f"mixed_precision: a weight budget of {budget / 8 / 2**20:.4f} MB is below what {min(bits)}-bit weights everywhere take ({floor_mb:.4f} MB)",
            hint="raise the budget or allow narrower candidate_bits",
        )
    if cfg.method == "eqnet":
        return _eqnet(model, layers, cfg, ctx, budget / max(n_weights, 1), bits)
    sens = sensitivities(model, layers, bits, ctx, cfg.samples)
    choice = allocate(sizes, sens, bits, budget)
    if cfg.quantizer == "gpfq":
        quantize_layers(
            model, [(n, m, choice[n]) for n, m in layers], GPFQConfig(samples=min(cfg.samples, ctx.calibration.num_samples)), ctx, method="mixed_precision+gpfq"
        )
    else:
        ctx.records.add(FloatWeights({n: m.weight.detach().clone() for n, m in layers}))

        with torch.no_grad():
            for n, m in layers:
                grid = Grid(choice[n], "per-channel", True)
                record_grid(ctx, n, grid.params(m.weight)[0], choice[n])
                m.weight.copy_(grid.fake_quant(m.weight))
    avg = sum(sizes[n] * choice[n] for n in sizes) / max(n_weights, 1)
    low = min(bits)
    ctx.details["sensitivity"] = {n: s[low] for n, s in sens.items()}
    ctx.details["mixed_precision"] = {
        "bits": choice,
        "average_bits": avg,
        "weight_mb": avg * n_weights / 8 / 2**20,
        "sensitivity_kl": sens,
        "quantizer": cfg.quantizer,
    }
    hist = {b: sum(1 for v in choice.values() if v == b) for b in bits}
    ctx.note(
        f"mixed_precision: {avg:.2f} average weight bits ({avg * n_weights / 8 / 2**20:.4f} MB of weights) over {len(layers)} layers "
        f"({', '.join(f'{c}x{b}-bit' for b, c in hist.items() if c)}), by sensitivity; most sensitive at {low} bits: "
        + ", ".join(sorted(sens, key=lambda n: -sens[n][low])[:3])
    )
    return model


def _eqnet(model: Any, layers: list, cfg: MixedPrecisionConfig, ctx: Any, avg_budget: float, bits: list[int]) -> Any:

    if cfg.steps < 1 or cfg.predictor_samples < 2:
        raise ConfigError("eqnet needs steps >= 1 and predictor_samples >= 2", hint="e.g. steps: 300, predictor_samples: 64")
    ctx.records.add(FloatWeights({n: m.weight.detach().clone() for n, m in layers}))
    res = run_eqnet(model, layers, avg_budget, tuple(sorted(bits)), ctx, steps=cfg.steps, predictor_samples=cfg.predictor_samples, lr=cfg.lr)
    ctx.details["mixed_precision"] = {"method": "eqnet", "bits": {n: c["bits"] for n, c in res["choice"].items()}, **res}
    ctx.note(
        f"mixed_precision (EQ-Net): {res['average_bits']:.2f} average weight bits; supernet {res['steps']} steps, predictor on "
        f"{res['predictor_samples']} measured configurations (mean abs error {res['predictor_mae']:.2f} pt), genetic search: "
        f"predicted top-1 {res['predicted_top1']:.2f}, measured {res['measured_top1']:.2f} on {res['validation_samples']} held-back samples"
    )
    return model


PASS = PassInfo(
    "mixed_precision",
    "torch",
    MixedPrecisionConfig,
    mixed_precision,
    "per-layer weight bit-widths under an average-bits or size budget, by sensitivity ranking",
    needs_calibration=True,
    produces=(FloatWeights, WeightGrids),
)
