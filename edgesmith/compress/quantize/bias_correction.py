"""``bias_correction``: undo the shift weight quantization causes in each layer's expected output.

Quantizing W to Ŵ moves every output channel's mean by E[(W − Ŵ) x]; with x the layer's input in the
quantized network, measured on calibration data, that shift is added to the layer's bias (the
empirical bias correction of Nagel et al., DFQ 2019; GPFQ's paper names it as an add-on). Layers are
corrected in order, each on inputs that already carry the earlier corrections. Runs after a weight
quantizer in the same recipe (``rtn``, ``gpfq``), which hands over the float weights it replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgesmith.compress.contract import FloatWeights
from edgesmith.compress.layers import as_rows, capture_inputs
from edgesmith.compress.registry import PassInfo
from edgesmith.errors import ConfigError


@dataclass(frozen=True)
class BiasCorrectionConfig:
    samples: int = 256

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")


def bias_correction(model: Any, cfg: BiasCorrectionConfig, ctx: Any) -> Any:
    import torch
    import torch.nn as nn

    record = ctx.records.get(FloatWeights)
    float_w = dict(record.entries) if record is not None else {}
    if not float_w:
        raise ConfigError("bias_correction has no quantized weights to correct", hint="list it after a weight quantizer (rtn or gpfq) in the recipe's passes")
    mods = dict(model.named_modules())
    shifts: dict[str, float] = {}
    for name, w_float in float_w.items():
        layer = mods.get(name)
        if layer is None:
            continue
        x = capture_inputs(model, [(name, layer)], ctx, cfg.samples).get(name)
        if x is None:
            continue
        rows = as_rows(layer, x)  # [G, rows, fan_in]
        g = rows.shape[0]
        dw = (w_float - layer.weight.detach()).reshape(g, layer.weight.shape[0] // g, -1)
        shift = torch.einsum("gon,gn->go", dw, rows.mean(dim=1)).reshape(-1)
        with torch.no_grad():
            if layer.bias is None:
                layer.bias = nn.Parameter(shift.to(layer.weight.dtype))
            else:
                layer.bias.add_(shift.to(layer.bias.dtype))
        shifts[name] = float(shift.abs().max())
    ctx.details["bias_correction"] = {"max_abs_shift": shifts}
    ctx.note(
        f"bias_correction: {len(shifts)} layer(s) corrected on {cfg.samples} samples"
        + (f" (largest shift {max(shifts.values()):.3g} at {max(shifts, key=lambda n: shifts[n])})" if shifts else "")
    )
    return model


PASS = PassInfo(
    "bias_correction",
    "torch",
    BiasCorrectionConfig,
    bias_correction,
    "correct the expected-output shift weight quantization causes, from calibration data",
    needs_calibration=True,
    requires=(FloatWeights,),
)
