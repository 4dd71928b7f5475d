"""Per-layer pruning ratios from sensitivity: where removing channels costs the original model's answers
least, remove more — instead of one uniform ratio, which is the wrong question for a real network (its
first layers and its narrow bottlenecks break, its wide middle layers barely notice).

1. Torch-Pruning's dependency graph gives the channel groups (a conv with its batch norm and the layers
   that read its channels) and each group's channel importance (the pass's criterion).
2. Sensitivity: for each group and each level (1/8 ... 6/8 of its channels), the group's least important
   channels are silenced (their outputs multiplied by 0 through forward hooks on every layer of the group,
   nothing rebuilt) and the distance of the model's output to the original's on a calibration batch is
   measured with the distillation term that fits the output (``distill/targets.py``).
3. Allocation: from nothing pruned, greedily take the step (one group one level further) with the least
   added distance per MAC saved, until the MACs removed reach ``target`` (a share of the model's MACs). The
   MACs of each conv/linear layer are counted from its shapes and scale with the channels kept on its
   input and output side, so neighbouring cuts compound as they will in the pruned network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LEVELS = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75)


@dataclass
class Group:
    root: Any  # the module whose output channels name the group
    name: str
    channels: int
    order: Any  # channel indices, least important first
    cost: dict[float, float]  # level -> distance of the output to the original's with that share silenced


def layer_macs(model: Any, example: tuple) -> dict[int, float]:
    """Each conv/linear layer's MACs on ``example`` (by module id), from its output shape."""
    import torch
    import torch.nn as nn

    macs: dict[int, float] = {}

    def hook(mod: Any, inp: Any, out: Any) -> None:
        if isinstance(mod, nn.Linear):
            macs[id(mod)] = macs.get(id(mod), 0.0) + out.numel() * mod.in_features
        else:
            k = 1
            for v in mod.kernel_size:
                k *= v
            macs[id(mod)] = macs.get(id(mod), 0.0) + out.numel() * (mod.in_channels // mod.groups) * k

    mods = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    hooks = [m.register_forward_hook(hook) for m in mods]
    try:
        with torch.no_grad():
            model.eval()(*example)
    finally:
        for h in hooks:
            h.remove()
    return macs


def _silence(outs: list[tuple[Any, Any]]) -> list[Any]:
    """Forward hooks zeroing the given output channels of each module (dim 1 for convs and norms, last for linear)."""
    import torch.nn as nn

    def make(mod: Any, idxs: Any) -> Any:
        def hook(m: Any, inp: Any, out: Any) -> Any:
            out = out.clone()
            if isinstance(m, nn.Linear):
                out[..., idxs] = 0
            else:
                out[:, idxs] = 0
            return out

        return mod.register_forward_hook(hook)

    return [make(m, i) for m, i in outs]


def groups(graph: Any, importance: Any, ignored: list[Any], names: dict[int, str]) -> list[Any]:
    """The prunable channel groups (conv and linear roots), with their channel order by importance."""
    import torch
    import torch.nn as nn

    found = []
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear]):
        root = group[0].dep.target.module
        if id(root) not in names:
            continue
        scores = importance(group)
        if scores is None:
            continue
        order = torch.argsort(scores.detach().flatten())
        found.append((root, order))
    return found


def measure(tp: Any, graph: Any, model: Any, found: list[Any], example: tuple, names: dict[int, str], distance: Any) -> list[Group]:
    """Each group's cost at each level: the output's distance to the original's with that share of its least
    important channels silenced."""
    import torch
    import torch.nn as nn

    out: list[Group] = []
    for root, order in found:
        channels = int(order.numel())
        cost: dict[float, float] = {}
        for level in LEVELS:
            k = int(round(level * channels))
            if k < 1 or k >= channels:
                continue
            idxs = order[:k].tolist()
            group = graph.get_pruning_group(root, tp.prune_conv_out_channels if not isinstance(root, nn.Linear) else tp.prune_linear_out_channels, idxs=idxs)
            outs = [
                (dep.target.module, list(i))
                for dep, i in group
                if isinstance(dep.target.module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.modules.batchnorm._BatchNorm))
                and "out" in getattr(dep.handler, "__name__", "")
            ]
            hooks = _silence(outs)
            try:
                with torch.no_grad():
                    cost[level] = float(distance(model(*example)))
            finally:
                for h in hooks:
                    h.remove()
        out.append(Group(root, names[id(root)], channels, order, cost))
    return out


def allocate(tp: Any, graph: Any, measured: list[Group], macs: dict[int, float], total_macs: float, target: float) -> dict[str, float]:
    """Per-group ratios (by root layer name) removing ``target`` of ``total_macs`` at the least measured cost."""
    import torch.nn as nn

    # which group's channels each layer's input and output side belong to
    side_in: dict[int, int] = {}
    side_out: dict[int, int] = {}
    for gi, g in enumerate(measured):
        fn = tp.prune_linear_out_channels if isinstance(g.root, nn.Linear) else tp.prune_conv_out_channels
        for dep, _ in graph.get_pruning_group(g.root, fn, idxs=[0]):
            mod, name = dep.target.module, getattr(dep.handler, "__name__", "")
            if id(mod) in macs:
                (side_out if "out" in name else side_in)[id(mod)] = gi
    ratio = [0.0] * len(measured)

    def kept() -> float:
        total = total_macs
        for mid, m in macs.items():
            a, b = side_in.get(mid), side_out.get(mid)
            keep = (1 - ratio[a]) if a is not None else 1.0
            if b is not None and b != a:
                keep *= 1 - ratio[b]
            total -= m * (1 - keep)
        return total

    goal = total_macs * (1 - target)
    now = kept()
    while now > goal:
        best = None
        for gi, g in enumerate(measured):
            nxt = [lv for lv in sorted(g.cost) if lv > ratio[gi]]
            if not nxt:
                continue
            lv = nxt[0]
            old = ratio[gi]
            ratio[gi] = lv
            saved = now - kept()
            ratio[gi] = old
            if saved <= 0:
                continue
            added = g.cost[lv] - (g.cost.get(old, 0.0) if old else 0.0)
            score = max(added, 0.0) / saved
            if best is None or score < best[0]:
                best = (score, gi, lv)
        if best is None:
            break  # every group at its deepest level: as far as pruning goes
        ratio[best[1]] = best[2]
        now = kept()
    return {g.name: r for g, r in zip(measured, ratio) if r > 0}
