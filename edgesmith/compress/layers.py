"""Finding a model's conv/linear layers and what flows into them, for the torch-level passes.

Layers are found on ``torch.fx`` traces of ordinary ``nn.Module`` models (a ``.pt2`` program's
module has no ``nn.Conv2d`` children: passes skip it and say so). Inputs are captured with forward
hooks on calibration batches; conv inputs are unfolded into the patches each output sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from edgesmith.errors import ConfigError


def weight_layers(model: Any) -> list[tuple[str, Any]]:
    """(name, module) of every Conv1d/2d and Linear, in definition order."""
    import torch.nn as nn

    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def check_names(layers: list[tuple[str, Any]], names: Any, pass_name: str, option: str) -> None:
    """Every name a pass option lists (``exclude``, ``ignore``) must be one of the conv/linear layers."""
    known = {n for n, _ in layers}
    unknown = [e for e in names if e not in known]
    if unknown:
        raise ConfigError(
            f"{pass_name}: {option} names {unknown[0]!r}, which is not a conv/linear layer of the model", hint=f"layers: {', '.join(sorted(known)) or 'none'}"
        )


def trace(model: Any) -> Any:
    """A torch.fx graph of ``model``, or a ConfigError saying why it cannot be traced."""
    import torch.fx

    try:
        return torch.fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - any tracing failure becomes one clear message
        raise ConfigError(
            f"cannot trace the model's graph with torch.fx ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})",
            hint="this pass needs an nn.Module whose forward has no data-dependent control flow",
        ) from exc


def single_user(node: Any) -> Any | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def calibration_batches(ctx: Any, samples: int) -> Iterator[dict]:
    """Up to ``samples`` calibration samples, as the input dicts the model's forward takes (positional order)."""
    if ctx.calibration is None:
        raise ConfigError("this pass needs calibration data", hint="add `data: {calibration: {source: digits}}` or --data")
    yield from ctx.calibration.take(samples).batches


def forward_batch(model: Any, batch: Any, input_names: list[str]) -> Any:
    import torch

    return model(*[torch.from_numpy(batch.inputs[n]) for n in input_names])


def capture_inputs(model: Any, layers: list[tuple[str, Any]], ctx: Any, samples: int) -> dict[str, Any]:
    """Every listed layer's input over ``samples`` calibration samples (concatenated on the batch axis)."""
    import torch

    seen: dict[str, list] = {n: [] for n, _ in layers}
    hooks = [m.register_forward_hook(lambda mod, args, out, n=n: seen[n].append(args[0].detach())) for n, m in layers]
    names = [s.name for s in ctx.input_specs]
    try:
        with torch.no_grad():
            for batch in calibration_batches(ctx, samples):
                forward_batch(model, batch, names)
    finally:
        for h in hooks:
            h.remove()
    return {n: torch.cat(v) for n, v in seen.items() if v}


def as_rows(layer: Any, x: Any, max_rows: int | None = None, seed: int = 0) -> Any:
    """Layer inputs as [rows, fan_in] matching ``weight.reshape(out, -1)`` (one row per patch for convs,
    per group for grouped convs: [groups, rows, fan_in]); ``max_rows`` keeps a random subset."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    if isinstance(layer, nn.Linear):
        rows = x.reshape(-1, x.shape[-1])
        rows = rows.unsqueeze(0)
    else:
        if isinstance(layer, nn.Conv1d):
            x = x.unsqueeze(-1)
            k, s, p, d = (layer.kernel_size[0], 1), (layer.stride[0], 1), (layer.padding[0], 0), (layer.dilation[0], 1)
        else:
            k, s, p, d = layer.kernel_size, layer.stride, layer.padding, layer.dilation
        if isinstance(p, str):
            raise ConfigError(f"padding={p!r} convolutions are not supported by this pass", hint="use numeric padding")
        cols = F.unfold(x, k, dilation=d, padding=p, stride=s)  # type: ignore[arg-type]  # p is numeric here (checked above)  # [B, C*kh*kw, L]
        g = layer.groups
        cols = cols.reshape(x.shape[0], g, -1, cols.shape[-1])  # [B, g, fan_in, L]
        rows = cols.permute(1, 0, 3, 2).reshape(g, -1, cols.shape[2])  # [g, B*L, fan_in]
    if max_rows is not None and rows.shape[1] > max_rows:
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(rows.shape[1], generator=gen)[:max_rows]
        rows = rows[:, idx]
    return rows


def set_module(model: Any, dotted: str, new: Any) -> None:
    """Replace the submodule at ``dotted`` (e.g. ``layer1.0.conv1``) with ``new``."""
    parent_name, _, child = dotted.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
