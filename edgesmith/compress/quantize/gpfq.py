"""``gpfq``: greedy path-following weight quantization (Lybrand & Saab; docs/algorithms.md §1).

Layer by layer, each output neuron's weights are quantized one input at a time so that the running
residual u_t = Σ_{s≤t} (w_s X_s − q_s X̃_s) stays small, where X holds the layer's inputs in the float
network and X̃ in the network whose earlier layers are already quantized:

    q_t = Q(⟨X̃_t, u_{t−1} + w_t X_t⟩ / ‖X̃_t‖²),   u_t = u_{t−1} + w_t X_t − q_t X̃_t,
    Q(z) = sign(z) δ min(⌊|z|/δ + ½⌋, K)   (alphabet {±kδ : 0 ≤ k ≤ K}),  δ = C·rad/K.

Vectorised over output neurons (and over groups of grouped convs); convs through their unfolded
patches. ``levels: storable`` (default) uses K = 2^(b−1)−1, 2^b−1 levels that fit signed b-bit
integers; ``levels: paper`` uses the paper's K = 2^(b−1) (2^b+1 levels: one more than b bits hold).
``granularity: per-layer`` is the paper's single δ per layer (rad = mean of per-neuron max|w|);
``per-channel`` (default) gives each output neuron its own δ (rad = its max|w|), as deployed integer
kernels scale weights. The sparsity-promoting L0 variant (``l0_lambda`` > 0, λ = l0_lambda·rad):
Q(z) = sign(z)(λ + δ·round((|z|−λ)/δ))·1{|z|>λ} with δ = (C·rad − λ)/K.
Defaults from the paper: b=4, C=1.16, m=128 calibration samples, seed 0.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from edgesmith.compress.contract import FloatWeights, WeightGrids
from edgesmith.compress.layers import as_rows, capture_inputs
from edgesmith.compress.quantize._snap import record_grid
from edgesmith.compress.quantize.rtn import select_layers
from edgesmith.compress.registry import PassInfo
from edgesmith.errors import ConfigError


@dataclass(frozen=True)
class GPFQConfig:
    bits: int = 4
    C: float = 1.16
    samples: int = 128  # calibration samples (images) per layer
    patch_fraction: float = 1.0  # of each conv input's patches kept (random, seeded)
    max_rows: int = 4096  # cap on rows (patches) per layer after subsampling
    granularity: Literal["per-layer", "per-channel"] = "per-channel"
    levels: Literal["storable", "paper"] = "storable"
    l0_lambda: float = 0.0  # > 0: the sparsity-promoting variant, threshold as a fraction of rad
    exclude: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 8:
            raise ValueError(f"bits must be between 2 and 8, got {self.bits}")
        if self.C <= 0:
            raise ValueError(f"C must be > 0, got {self.C}")
        if self.samples < 1 or self.max_rows < 1:
            raise ValueError("samples and max_rows must be >= 1")
        if not 0 < self.patch_fraction <= 1:
            raise ValueError(f"patch_fraction must be in (0, 1], got {self.patch_fraction}")
        if not 0 <= self.l0_lambda < self.C:
            raise ValueError(f"l0_lambda must be in [0, C), got {self.l0_lambda}")

    @property
    def K(self) -> int:
        return 2 ** (self.bits - 1) - (1 if self.levels == "storable" else 0)


def quantizer(z: Any, delta: Any, K: int, lam: Any = None) -> Any:
    """Q(z) of §1 (``lam`` given: the L0 variant), elementwise; ``delta``/``lam`` broadcast against ``z``."""
    import torch

    if lam is None:
        return torch.sign(z) * delta * torch.clamp(torch.floor(z.abs() / delta + 0.5), max=K)
    k = torch.clamp(torch.round((z.abs() - lam) / delta), min=0, max=K)
    return torch.where(z.abs() > lam, torch.sign(z) * (lam + delta * k), torch.zeros_like(z))


def gpfq_quantize(W: Any, X: Any, Xq: Any, delta: Any, K: int, lam: Any = None) -> tuple[Any, Any]:
    """GPFQ over a batch of independent problems.

    W: [G, out, N] weights; X, Xq: [G, m, N] float / quantized-network inputs; delta (and lam):
    broadcastable to [G, out]. Returns (Q [G, out, N] quantized weights, U [G, out, m] final residual,
    which equals X Wᵀ − X̃ Qᵀ transposed)."""
    import torch

    G, out, N = W.shape
    m = X.shape[1]
    U = torch.zeros(G, out, m, dtype=W.dtype)
    Q = torch.zeros_like(W)
    norms = (Xq * Xq).sum(dim=1)  # [G, N]
    for t in range(N):
        xt, xqt = X[:, :, t], Xq[:, :, t]  # [G, m]
        V = U + W[:, :, t : t + 1] * xt[:, None, :]  # [G, out, m]
        n = norms[:, t : t + 1]  # [G, 1]
        z = torch.where(n > 0, torch.einsum("gom,gm->go", V, xqt) / n.clamp(min=1e-30), W[:, :, t])
        q = quantizer(z, delta, K, lam)
        Q[:, :, t] = q
        U = V - q[:, :, None] * xqt[:, None, :]
    return Q, U


def gpfq(model: Any, cfg: GPFQConfig, ctx: Any) -> Any:

    layers = select_layers(model, cfg.exclude, ctx, "gpfq")
    return quantize_layers(model, [(n, m, cfg.bits) for n, m in layers], cfg, ctx)


def quantize_layers(model: Any, plan: list[tuple[str, Any, int]], cfg: GPFQConfig, ctx: Any, method: str = "gpfq") -> Any:
    """GPFQ over ``plan`` — (name, layer, bits) in forward order — each layer at its own bit-width
    (``mixed_precision`` uses this); ``cfg`` gives everything else."""

    import torch

    if ctx.calibration is None:
        raise ConfigError("gpfq needs calibration data", hint="add `data: {calibration: {source: digits, samples: 128}}`")
    have = ctx.calibration.num_samples
    if have < cfg.samples:
        raise ConfigError(
            f"gpfq asks for {cfg.samples} calibration samples, the calibration data has {have}",
            hint=f"give at least {cfg.samples} calibration samples, or set the pass's `samples: {have}` or lower",
        )
    model.eval()
    float_model = copy.deepcopy(model)
    ctx.records.add(FloatWeights({n: m.weight.detach().clone() for n, m, _ in plan}))
    float_mods = dict(float_model.named_modules())
    errors: dict[str, float] = {}
    skipped = []
    for i, (name, layer, bits) in enumerate(plan):
        lcfg = dataclasses.replace(cfg, bits=bits)
        X = capture_inputs(float_model, [(name, float_mods[name])], ctx, cfg.samples).get(name)
        Xq = capture_inputs(model, [(name, layer)], ctx, cfg.samples).get(name)
        if X is None:
            skipped.append(f"{name} (not reached by the forward pass)")
            continue
        rows_f = _subsample(as_rows(layer, X), cfg, i)
        rows_q = _subsample(as_rows(layer, Xq), cfg, i)
        W = layer.weight.detach().float()
        g = rows_f.shape[0]
        Wg = W.reshape(g, W.shape[0] // g, -1)  # [G, out/G, fan_in]
        rad_rows = Wg.abs().amax(dim=2)  # [G, out/G]
        rad = rad_rows.mean().expand_as(rad_rows) if cfg.granularity == "per-layer" else rad_rows
        lam = cfg.l0_lambda * rad if cfg.l0_lambda > 0 else None
        delta = ((cfg.C * rad - (lam if lam is not None else 0.0)) / lcfg.K).clamp(min=1e-12)
        with torch.no_grad():
            Q, U = gpfq_quantize(Wg.double(), rows_f.double(), rows_q.double(), delta.double(), lcfg.K, None if lam is None else lam.double())
            ref = torch.einsum("gmn,gon->gom", rows_f.double(), Wg.double())
            errors[name] = float((U**2).sum() / (ref**2).sum().clamp(min=1e-30))
            layer.weight.copy_(Q.reshape(W.shape).to(layer.weight.dtype))
        if lam is None:  # the L0 variant's levels (λ + kδ) are not a multiple of one scale
            record_grid(ctx, name, delta.reshape(-1), bits)
    ctx.details.setdefault("weight_quantization", {}).update(
        {
            n: {
                "method": method,
                "bits": b,
                "levels": 2 * dataclasses.replace(cfg, bits=b).K + 1,
                "granularity": cfg.granularity,
                "relative_layer_error": errors.get(n),
                "zero_fraction": float((m.weight == 0).float().mean()),
            }
            for n, m, b in plan
        }
    )
    worst = max(errors, key=lambda n: errors[n]) if errors else None
    bits_used = sorted({b for _, _, b in plan}, reverse=True)
    ctx.note(
        f"{method}: {len(errors)} layer(s) to {'/'.join(map(str, bits_used))}-bit weights ({cfg.granularity}, "
        f"m={cfg.samples}, C={cfg.C}"
        + (f", L0 λ={cfg.l0_lambda}·rad" if cfg.l0_lambda else "")
        + ")"
        + (f"; worst relative layer error {errors[worst]:.3g} at {worst}" if worst else "")
        + (f"; skipped: {'; '.join(skipped)}" if skipped else "")
        + (f"; kept in float: {', '.join(cfg.exclude)}" if cfg.exclude else "")
    )
    return model


def _subsample(rows: Any, cfg: GPFQConfig, layer_index: int) -> Any:
    import torch

    keep = min(cfg.max_rows, max(1, int(round(rows.shape[1] * cfg.patch_fraction))))
    if keep >= rows.shape[1]:
        return rows
    gen = torch.Generator().manual_seed(cfg.seed * 100003 + layer_index)  # NOTE: same rows for X and X̃
    return rows[:, torch.randperm(rows.shape[1], generator=gen)[:keep]]


PASS = PassInfo(
    "gpfq",
    "torch",
    GPFQConfig,
    gpfq,
    "GPFQ weight quantization, 2-8 bits, optional L0 sparsity (docs/algorithms.md §1)",
    needs_calibration=True,
    produces=(FloatWeights, WeightGrids),
)
