"""``prune_channels``: structured pruning that removes whole channels and filters, so the network — and the
exported ONNX — really gets smaller and faster on dense runtimes.

Coupled layers are found by Torch-Pruning's dependency graph (DepGraph, Fang et al. 2023) rather than by
hand: the convs feeding one residual add lose the same channels, a depthwise conv follows its input, the
linear after a flatten loses the matching columns, batch norms follow their conv. Importance per channel
group: L1 or L2 norm of the weights, batch-norm scale, or first-order Taylor (|w·∂L/∂w| on a calibration
batch). Ratio per layer (the same share everywhere), global (one ranking across layers), or — with
``allocation: sensitivity`` — found per layer from how much each layer's channels cost the original model's
answers (``sensitivity.py``; ``ratio`` is then the share of the model's MACs removed); channel counts
rounded to multiples of ``round_to`` for the kernels. Recurrent layers, which Torch-Pruning cannot cut, lose
``recurrent_ratio`` of their hidden units by hand (``recurrent.py``). After the cut, batch-norm statistics are re-estimated
on the calibration data, and ``recover:`` trains the result back toward the original model (labels optional). Layers whose channels are the model's outputs are
never pruned (the outputs keep their shape); ``ignore`` names more.

The work happens on a copy: a model the dependency graph cannot trace (an op it does not know) leaves the
pass skipped with the reason, and a plan that would empty a layer is refused naming it — never half-applied.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from edgesmith._lazy import require
from edgesmith.compress.count import count_macs, count_params
from edgesmith.compress.distill.engine import RecoverConfig, recover, refresh_batchnorm
from edgesmith.compress.distill.targets import output_task, soft_loss
from edgesmith.compress.prune import recurrent, sensitivity
from edgesmith.compress.prune.common import check_fraction, prunable_layers
from edgesmith.compress.registry import PassInfo
from edgesmith.data.synthetic import example_inputs
from edgesmith.errors import ConfigError


@dataclass(frozen=True)
class ChannelsConfig:
    ratio: float = 0.5  # share of each layer's output channels removed (scope layer) or of all of them (global); sensitivity: of the MACs
    allocation: Literal["uniform", "sensitivity"] = "uniform"  # sensitivity: per-layer ratios from each layer's measured cost
    importance: Literal["l1", "l2", "bn-scale", "taylor"] = "l1"
    scope: Literal["layer", "global"] = "layer"
    round_to: int | None = 8  # channel counts kept at multiples of this (vector width of the kernels)
    ratios: dict[str, float] = field(default_factory=dict)  # per-layer ratio overrides (dotted conv/linear names)
    ignore: tuple[str, ...] = ()  # layers whose output channels stay
    recurrent_ratio: float = 0.0  # share of each LSTM/GRU/RNN's hidden units removed (one whose output feeds Linear layers)
    recover: RecoverConfig | None = None

    @property
    def uses_data(self) -> bool:
        return self.importance == "taylor"  # gradients on a calibration batch

    def __post_init__(self) -> None:
        check_fraction("ratio", self.ratio)
        for name, r in self.ratios.items():
            if not 0.0 < float(r) <= 1.0:
                raise ValueError(f"ratios[{name!r}] must be in (0, 1], got {r}")
        if not 0.0 <= float(self.recurrent_ratio) < 1.0:
            raise ValueError(f"recurrent_ratio must be in [0, 1), got {self.recurrent_ratio}")
        if self.round_to is not None and self.round_to < 1:
            raise ValueError("round_to must be >= 1 (or null)")


def _importance(tp: Any, name: str) -> Any:
    return {
        "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
        "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
        "bn-scale": lambda: tp.importance.BNScaleImportance(),
        "taylor": lambda: tp.importance.GroupTaylorImportance(),
    }[name]()


def _example(ctx: Any, n: int = 8) -> tuple[Any, ...]:
    import torch

    names = [s.name for s in ctx.input_specs]
    if ctx.calibration is not None and ctx.calibration.num_samples:
        first = ctx.calibration.first(min(n, ctx.calibration.num_samples))
        return tuple(torch.from_numpy(first[n]) for n in names)
    feeds = example_inputs(ctx.input_specs, batch=2)
    return tuple(torch.from_numpy(feeds[n]) for n in names)


def _outputs(model: Any, example: tuple) -> list[Any]:
    import torch

    with torch.no_grad():
        out = model.eval()(*example)
    return list(out) if isinstance(out, (tuple, list)) else [out]


def output_layers(tp: Any, graph: Any, model: Any) -> list[Any]:
    """Conv/linear modules whose output channels reach a model output without passing another conv/linear
    (a depthwise conv, a norm or an elementwise op passes channels through): pruning them changes the outputs."""
    import torch.nn as nn

    roots = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    found = []
    for m in roots:
        node = graph.module2node.get(m)
        if node is None:
            continue
        seen, stack = set(), list(node.outputs)
        reaches = not node.outputs
        while stack and not reaches:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            mod = n.module
            passes = isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and mod.groups == mod.in_channels == mod.out_channels
            if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and not passes:
                continue
            if isinstance(mod, tp.ops._OutputOp) or not n.outputs:
                reaches = True
            stack.extend(n.outputs)
        if reaches:
            found.append(m)
    return found


def _lost_layers(model: Any, ends: list[Any], example: tuple, outputs: list[Any]) -> list[Any]:
    """Layers the forward runs where the dependency graph is missing or ends although their output is not a
    model output's shape: the trace was lost there (the graph cannot tell what consumes those channels)."""
    import torch

    shapes: dict[int, tuple] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o: shapes.__setitem__(id(mod), tuple(o.shape))) for m in ends]
    try:
        with torch.no_grad():
            model(*example)
    finally:
        for h in hooks:
            h.remove()
    wanted = {tuple(o.shape) for o in outputs}
    # NOTE: a layer the forward never ran (a dead module) has no shape here and is no loss
    return [m for m in ends if id(m) in shapes and shapes[id(m)] not in wanted]


def _taylor_grads(model: Any, example: tuple, ctx: Any) -> None:
    """Gradients of a task loss on one calibration batch, for first-order Taylor importance."""
    import torch
    import torch.nn.functional as F

    model.zero_grad()
    model.train(False)
    out = model(*example)
    logits = out[0] if isinstance(out, (tuple, list)) else out
    labels = None
    if ctx.calibration is not None and ctx.calibration.has_labels:
        labels = torch.from_numpy(np.concatenate([b.labels for b in ctx.calibration.batches])[: len(logits)]).long()
    if labels is None or logits.dim() != 2:  # no labels: the model's own decisions stand in for them
        loss = F.cross_entropy(logits.flatten(1), logits.flatten(1).argmax(1)) if logits.dim() >= 2 else logits.pow(2).mean()
    else:
        loss = F.cross_entropy(logits, labels)
    loss.backward()


def apply(model: Any, cfg: ChannelsConfig, ctx: Any) -> Any:
    import torch

    tp = require("torch_pruning")
    layers = prunable_layers(model, cfg.ignore, "prune_channels")
    by_name = {n: m for n, m in layers}
    unknown = [n for n in cfg.ratios if n not in by_name]
    if unknown:
        raise ConfigError(
            f"prune_channels: ratios names {unknown[0]!r}, which is not a conv/linear layer of the model", hint=f"layers: {', '.join(sorted(by_name))}"
        )
    for n, r in cfg.ratios.items():
        width = by_name[n].weight.shape[0]
        if round(float(r) * width) >= width:
            raise ConfigError(
                f"prune_channels: ratio {r:g} would remove all {width} output channels of {n}", hint="give that layer a ratio below 1, or add it to ignore"
            )
    example = _example(ctx)
    before = _outputs(model, example)
    work = copy.deepcopy(model).eval()
    work_layers = dict(prunable_layers(work, (), "prune_channels"))
    try:
        graph = tp.DependencyGraph().build_dependency(work, example_inputs=example)
    except Exception as exc:  # noqa: BLE001 - any tracing failure: the pass is skipped, the model untouched
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        ctx.note(f"prune_channels SKIPPED: Torch-Pruning's dependency graph cannot trace this model ({type(exc).__name__}: {first}); the model is unchanged")
        ctx.details["prune_channels"] = {"skipped": first}
        return model
    outs = output_layers(tp, graph, work)
    lost = _lost_layers(work, [m for m in work_layers.values() if m not in graph.module2node] + outs, example, before)
    if lost:
        names = ", ".join(next(n for n, m in work_layers.items() if m is x) for x in lost)
        why = (
            f"Torch-Pruning's dependency graph loses the trail at {names}: it cannot follow that layer's output to a model "
            "output (a data-dependent op such as nonzero or item(), a torch.no_grad block, or an op without gradients)"
        )
        ctx.note(f"prune_channels SKIPPED: {why}; the model is unchanged")
        ctx.details["prune_channels"] = {"skipped": why}
        return model
    # NOTE: Torch-Pruning leaves recurrent layers alone (its LSTM handler breaks on bidirectional ones); the
    # channels feeding them can still go, and their hidden units are cut by hand after (recurrent.py)
    ignored = outs + [work_layers[n] for n in cfg.ignore] + [m for m in work.modules() if isinstance(m, torch.nn.RNNBase)]
    name_of = {id(m): n for n, m in work_layers.items()}
    one = tuple(t[:1] for t in example)
    macs0, params0 = count_macs(work, one), count_params(work)
    channels0 = {n: m.weight.shape[0] for n, m in work_layers.items()}
    imp = _importance(tp, cfg.importance)
    if cfg.importance == "taylor":
        _taylor_grads(work, example, ctx)
    per_layer = {n: float(r) for n, r in cfg.ratios.items()}
    if cfg.allocation == "sensitivity":
        found = _allocate(tp, graph, work, imp, ignored, name_of, ctx, cfg.ratio)
        per_layer = {**found, **per_layer}
    pruner = tp.pruner.MetaPruner(
        work,
        example,
        importance=imp,
        pruning_ratio=0.0 if cfg.allocation == "sensitivity" else cfg.ratio,
        global_pruning=cfg.scope == "global",
        pruning_ratio_dict={work_layers[n]: r for n, r in per_layer.items()} or None,
        ignored_layers=ignored,
        round_to=cfg.round_to,
        max_pruning_ratio=1.0,
    )
    for group in pruner.step(interactive=True):
        root = group[0][0].target.module
        n_out = root.weight.shape[0] if hasattr(root, "weight") else None
        removed = len(group[0][1])
        if n_out is not None and removed >= n_out:
            raise ConfigError(
                f"prune_channels: the plan removes all {n_out} output channels of {name_of.get(id(root), type(root).__name__)}",
                hint="lower ratio (or that layer's entry in ratios), or add the layer to ignore",
            )
        try:
            group.prune()
        except Exception as exc:  # noqa: BLE001 - a layer Torch-Pruning cannot cut: the pass is skipped, the model untouched
            why = f"Torch-Pruning failed to prune {name_of.get(id(root), type(root).__name__)} ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
            ctx.note(f"prune_channels SKIPPED: {why}; the model is unchanged (add the layer to ignore to prune the rest)")
            ctx.details["prune_channels"] = {"skipped": why}
            return model
    hidden = _recurrent(work, cfg, ctx)
    work.zero_grad(set_to_none=True)
    after = _outputs(work, example)
    if [tuple(a.shape) for a in after] != [tuple(b.shape) for b in before]:
        raise ConfigError("prune_channels: pruning changed the shape of a model output", hint="add the output layers to ignore")
    macs1, params1 = count_macs(work, one), count_params(work)
    refreshed = refresh_batchnorm(work, ctx.calibration, [sp.name for sp in ctx.input_specs]) if ctx.calibration is not None else 0
    fitted = None
    if cfg.recover is not None:
        teacher = copy.deepcopy(model).eval()
        fitted = recover(work, teacher, ctx, cfg.recover, f"prune_channels {cfg.ratio:.0%}")
    changed = {n: [channels0[n], m.weight.shape[0]] for n, m in work_layers.items() if m.weight.shape[0] != channels0[n]}
    ctx.details["prune_channels"] = {
        "importance": cfg.importance,
        "scope": cfg.scope,
        "ratio": cfg.ratio,
        "allocation": cfg.allocation,
        "round_to": cfg.round_to,
        "batchnorm_refreshed": refreshed,
        "channels": changed,
        **({"recurrent_hidden": hidden} if hidden else {}),
        "kept_whole": sorted(name_of[id(m)] for m in outs if id(m) in name_of),
        "macs": [int(macs0), int(macs1)],
        "params": [int(params0), int(params1)],
        **({"recovery": fitted.summary(), "history": fitted.history} if fitted else {}),
    }
    ctx.note(
        f"prune_channels: {len(changed)} layers narrowed ({cfg.importance}, "
        + (f"per-layer ratios from sensitivity for {cfg.ratio:.0%} of the MACs" if cfg.allocation == "sensitivity" else f"{cfg.scope}, ratio {cfg.ratio:g}")
        + (f", multiples of {cfg.round_to}" if cfg.round_to else "")
        + f"); MACs {macs0 / 1e6:.2f} M -> {macs1 / 1e6:.2f} M "
        f"({macs0 / max(macs1, 1):.2f}x fewer), parameters {int(params0):,} -> {int(params1):,}" + (f"; recovery: {fitted.summary()}" if fitted else "")
    )
    return work


def _recurrent(work: Any, cfg: ChannelsConfig, ctx: Any) -> dict[str, list[int]]:
    """``recurrent_ratio`` of the hidden units of each recurrent layer that can lose them (recurrent.py)."""
    if not cfg.recurrent_ratio:
        return {}
    hidden, skipped = recurrent.prune(work, cfg.recurrent_ratio, cfg.round_to)
    for name, why in skipped.items():
        ctx.note(f"prune_channels: {name} keeps its hidden size: {why}")
    if hidden:
        ctx.note("prune_channels: recurrent hidden units " + ", ".join(f"{n} {a} -> {b}" for n, (a, b) in hidden.items()))
    return hidden


def _allocate(tp: Any, graph: Any, work: Any, imp: Any, ignored: list, name_of: dict, ctx: Any, target: float) -> dict[str, float]:
    """Per-layer ratios from sensitivity (sensitivity.py) on up to 32 calibration samples."""
    import torch

    batch = _example(ctx, 32)
    with torch.no_grad():
        ref = _outputs(work, batch)[0]
    task = output_task(ref)

    def distance(out: Any) -> float:
        out = out[0] if isinstance(out, (tuple, list)) else out
        return float(soft_loss(task, out, ref, 1.0))

    found = sensitivity.groups(graph, imp, ignored, name_of)
    measured = sensitivity.measure(tp, graph, work, found, batch, name_of, distance)
    macs = sensitivity.layer_macs(work, batch)
    ratios = sensitivity.allocate(tp, graph, measured, macs, float(sum(macs.values())), target)
    ctx.details.setdefault("prune_channels_sensitivity", {g.name: {f"{k:g}": round(v, 5) for k, v in g.cost.items()} for g in measured})
    return ratios


PASS = PassInfo(
    "prune_channels",
    "torch",
    ChannelsConfig,
    apply,
    "structured channel pruning through Torch-Pruning's dependency graph (L1/L2/BN-scale/Taylor): a smaller, faster dense network",
    precision="pruned",
    changes_architecture=True,
)
