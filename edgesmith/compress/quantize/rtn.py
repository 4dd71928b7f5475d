"""``rtn``: round-to-nearest weight quantization of every conv/linear layer, 2-8 bits, per-tensor,
per-channel or grouped, symmetric or asymmetric (``_grid.Grid``). The baseline GPFQ is measured
against. Weights are replaced by their dequantized values (the exported graph carries them in float
until the ONNX quantization step); the grid per layer goes into the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from edgesmith.compress.contract import FloatWeights, WeightGrids
from edgesmith.compress.layers import check_names, weight_layers
from edgesmith.compress.quantize._grid import Grid
from edgesmith.compress.quantize._snap import record_grid
from edgesmith.compress.registry import PassInfo


@dataclass(frozen=True)
class RTNConfig:
    bits: int = 4
    granularity: Literal["per-tensor", "per-channel", "per-group"] = "per-channel"
    symmetric: bool = True
    group_size: int = 32
    exclude: tuple[str, ...] = ()  # layer names kept in float

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 8:
            raise ValueError(f"bits must be between 2 and 8, got {self.bits}")
        if self.group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {self.group_size}")

    def grid(self) -> Any:

        return Grid(self.bits, self.granularity, self.symmetric, self.group_size)


def select_layers(model: Any, exclude: tuple[str, ...], ctx: Any, pass_name: str) -> list[tuple[str, Any]]:
    """The conv/linear layers a weight quantizer works on; unknown names in ``exclude`` are an error."""

    layers = weight_layers(model)
    check_names(layers, exclude, pass_name, "exclude")
    if not layers:
        ctx.note(f"{pass_name}: the model has no nn.Conv/nn.Linear modules (a .pt2 program?): nothing quantized")
    return [(n, m) for n, m in layers if n not in exclude]


def rtn(model: Any, cfg: RTNConfig, ctx: Any) -> Any:
    import torch

    grid = cfg.grid()
    layers = select_layers(model, cfg.exclude, ctx, "rtn")
    ctx.records.add(FloatWeights({n: m.weight.detach().clone() for n, m in layers}))

    with torch.no_grad():
        for n, m in layers:
            if cfg.granularity != "per-group" and cfg.symmetric:
                scale, _ = grid.params(m.weight)
                record_grid(ctx, n, scale if cfg.granularity == "per-channel" else scale.expand(m.weight.shape[0], 1), cfg.bits)
            m.weight.copy_(grid.fake_quant(m.weight))
    ctx.details.setdefault("weight_quantization", {}).update({n: {"method": "rtn", "grid": grid.describe()} for n, _ in layers})
    ctx.note(f"rtn: {len(layers)} layer(s) to {grid.describe()} weights" + (f"; kept in float: {', '.join(cfg.exclude)}" if cfg.exclude else ""))
    return model


PASS = PassInfo(
    "rtn", "torch", RTNConfig, rtn, "round-to-nearest weight quantization, 2-8 bits, per-tensor/channel/group", produces=(FloatWeights, WeightGrids)
)
