"""What the pruning passes share: the layers they may touch, ratio checks, masks that survive training
(re-applied after every optimiser step of the recovery engine's ``recover``), sparsity counts."""

from __future__ import annotations

import copy
from typing import Any

from edgesmith.compress.layers import check_names, weight_layers
from edgesmith.errors import ConfigError


def check_fraction(name: str, value: float) -> None:
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value}")


def prunable_layers(model: Any, ignore: tuple[str, ...], pass_name: str) -> list[tuple[str, Any]]:
    """Conv/linear layers by dotted name, less ``ignore``; a name in ``ignore`` that is no such layer is an error."""

    layers = weight_layers(model)
    check_names(layers, ignore, pass_name, "ignore")
    kept = [(n, m) for n, m in layers if n not in ignore]
    if not kept:
        raise ConfigError(f"{pass_name}: no conv/linear layer left to prune", hint="ignore fewer layers")
    return kept


def apply_masks(masks: dict[str, Any], layers: dict[str, Any]) -> None:
    for name, mask in masks.items():
        layers[name].weight.mul_(mask)


def sparsity(layers: list[tuple[str, Any]]) -> dict[str, float]:
    """Share of exact zeros per layer's weight, and overall (``"total"``)."""
    out, zeros, total = {}, 0, 0
    for n, m in layers:
        z, t = int((m.weight == 0).sum()), m.weight.numel()
        out[n] = round(z / t, 4)
        zeros, total = zeros + z, total + t
    out["total"] = round(zeros / max(total, 1), 4)
    return out


def dense_copy(model: Any) -> Any:
    return copy.deepcopy(model).eval()
