"""``qat``: quantization-aware fine-tuning with learned step sizes (LSQ; straight-through rounding).

Every conv/linear gets an LSQ weight quantizer (per output channel, symmetric) and an LSQ quantizer on
its input activation (per tensor; unsigned when the input was non-negative at initialisation); the model
is fine-tuned on the calibration data's labels, optionally distilled from the float model (Hinton KL at
temperature ``temperature`` mixed ``alpha`` : 1 − alpha with cross-entropy), for ``steps`` steps or
``minutes`` of wall time, on CPU — through the shared recovery engine (compress/distill/engine.py), which
keeps the best checkpoint on a held-out slice of the data. A ``recover:`` block hands the engine any of
its options instead (loss kd | topkld | hint | mse | ce, budget, early stopping, ...). With ``grad_bits`` set, each layer's output gradient is quantized as in
docs/algorithms.md §9 (stochastic rounding over an adaptive range γ·max|G|; first and last layers at 8 bits).
Afterwards the weights are left on their learned grids (kept exactly through ``ptq_int8``) and the
activation quantizers are removed: activations are quantized by the ONNX step (8-bit).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgesmith.compress.contract import FloatWeights, WeightGrids
from edgesmith.compress.distill.engine import RecoverConfig, fit
from edgesmith.compress.layers import forward_batch, set_module
from edgesmith.compress.quantize._lsq import GradientQuantizer, lsq_module
from edgesmith.compress.quantize._snap import record_grid
from edgesmith.compress.quantize.rtn import select_layers
from edgesmith.compress.registry import PassInfo
from edgesmith.errors import ConfigError


@dataclass(frozen=True)
class QATConfig:
    weight_bits: int = 4
    activation_bits: int = 8
    steps: int = 200
    minutes: float | None = None  # wall-clock budget instead of (or capping) steps
    lr: float = 1e-4
    batch_size: int = 64
    distill: bool = True
    alpha: float = 0.5  # weight of the distillation term
    temperature: float = 4.0
    grad_bits: int | None = None  # §9 gradient quantization
    exclude: tuple[str, ...] = ()
    seed: int = 0
    recover: RecoverConfig | None = None  # the recovery engine's options; overrides the training knobs above

    def __post_init__(self) -> None:
        if not 2 <= self.weight_bits <= 8 or not 2 <= self.activation_bits <= 8:
            raise ValueError(f"weight_bits and activation_bits must be between 2 and 8, got {self.weight_bits}, {self.activation_bits}")
        if self.steps < 1 or (self.minutes is not None and self.minutes <= 0):
            raise ValueError("a training budget of zero: steps must be >= 1 and minutes > 0")
        if self.grad_bits is not None and not 2 <= self.grad_bits <= 8:
            raise ValueError(f"grad_bits must be between 2 and 8, got {self.grad_bits}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")


def _wrap(layer: Any, cfg: QATConfig, grad_q: Any) -> Any:
    import torch.nn as nn

    class QATLayer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer
            self.wq = lsq_module(cfg.weight_bits, True, True, layer.weight.shape[0])
            self.aq = None
            self.grad_q = grad_q

        def forward(self, x: Any) -> Any:
            if self.aq is None:
                self.aq = lsq_module(cfg.activation_bits, False, symmetric=bool(x.detach().min() < 0)).to(x.device)
            w = self.wq(self.layer.weight)
            xq = self.aq(x)
            if isinstance(self.layer, nn.Linear):
                import torch.nn.functional as F

                y = F.linear(xq, w, self.layer.bias)
            else:
                y = self.layer._conv_forward(xq, w, self.layer.bias)
            if self.grad_q is not None and y.requires_grad:
                y.register_hook(self.grad_q)
            return y

    return QATLayer()


def qat(model: Any, cfg: QATConfig, ctx: Any) -> Any:

    import torch

    data = ctx.calibration
    rec = cfg.recover or RecoverConfig(
        loss="kd" if cfg.distill else "ce",
        alpha=cfg.alpha if cfg.distill else 0.0,
        temperature=cfg.temperature,
        steps=cfg.steps if cfg.minutes is None else None,
        minutes=cfg.minutes,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        patience=None,
        seed=cfg.seed,
    )
    if data is None or (rec.needs_labels and not data.has_labels):
        raise ConfigError(
            "qat trains on labelled data, and the calibration data has no labels",
            hint="give labelled calibration data (npz key `labels`), or `recover: {alpha: 1}` to distil from the float model alone",
        )
    torch.manual_seed(cfg.seed)
    layers = select_layers(model, cfg.exclude, ctx, "qat")
    teacher = copy.deepcopy(model).eval()
    ctx.records.add(FloatWeights({n: m.weight.detach().clone() for n, m in layers}))
    names = [s.name for s in ctx.input_specs]
    wrapped = {}
    for i, (n, m) in enumerate(layers):
        edge = i in (0, len(layers) - 1)
        gq = GradientQuantizer(8 if edge else cfg.grad_bits, seed=cfg.seed + i) if cfg.grad_bits else None
        wrapped[n] = _wrap(m, cfg, gq)
        set_module(model, n, wrapped[n])
    first = {k: np.concatenate([b.inputs[k] for b in data.batches])[: rec.batch_size] for k in names}
    with torch.no_grad():  # initialise every quantizer from a first batch
        model.eval()
        forward_batch(model, _Batch(first), names)
    quant_params = [p for w in wrapped.values() for q in (w.wq, w.aq) for p in q.parameters()]
    ids = {id(p) for p in quant_params}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids], "lr": rec.lr}, {"params": quant_params, "lr": rec.lr * 10}]
    fitted = fit(model, teacher, data, names, rec, param_groups=groups, prepare=_freeze_bn, label=f"qat W{cfg.weight_bits}")
    start, step, losses = time.time() - fitted.seconds, fitted.steps, fitted.losses
    model.eval()
    with torch.no_grad():  # bake: weights onto their learned grids, wrappers out
        for n, w in wrapped.items():
            w.layer.weight.copy_(w.wq(w.layer.weight))
            record_grid(ctx, n, w.wq.step.abs().detach(), cfg.weight_bits)
            set_module(model, n, w.layer)
    loss_first, loss_last = float(np.mean(losses[:10])), float(np.mean(losses[-10:]))
    ctx.details["qat"] = {
        "steps": step,
        "seconds": round(time.time() - start, 1),
        "loss_first10": loss_first,
        "loss_last10": loss_last,
        "weight_bits": cfg.weight_bits,
        "activation_bits": cfg.activation_bits,
        "grad_bits": cfg.grad_bits,
        "loss": rec.loss,
        "recovery": fitted.summary(),
        "history": fitted.history,
    }
    ctx.note(
        f"qat: {fitted.summary()} on {data.num_samples} samples, W{cfg.weight_bits}A{cfg.activation_bits}"
        + (f"G{cfg.grad_bits}" if cfg.grad_bits else "")
        + (f", {rec.loss} from the float model (alpha {rec.alpha}, T {rec.temperature})" if rec.loss != "ce" else ", labels only")
        + f"; loss {loss_first:.3f} -> {loss_last:.3f}"
        + ("; activations are exported 8-bit (the ONNX step quantizes them)" if cfg.activation_bits < 8 else "")
    )
    return model


class _Batch:
    def __init__(self, inputs: dict) -> None:
        self.inputs = inputs


def _freeze_bn(model: Any) -> None:
    """Batch norm keeps its running statistics during fine-tuning (small batches on CPU)."""
    import torch.nn as nn

    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


PASS = PassInfo(
    "qat",
    "torch",
    QATConfig,
    qat,
    "quantization-aware fine-tuning with learned step sizes (LSQ), optional distillation and §9 gradient quantization",
    needs_calibration=True,
    produces=(FloatWeights, WeightGrids),
)
