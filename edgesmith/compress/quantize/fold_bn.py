"""``fold_bn``: fold batch norm into the conv/linear layer before it (docs/algorithms.md §12).

W' = W · γ/σ, b' = (b − μ) · γ/σ + β with σ = sqrt(var + ε), per output channel — torch's own
``fuse_conv_bn_eval`` / ``fuse_linear_bn_eval`` do the arithmetic; this pass finds the pairs on a
torch.fx trace (the layer's output feeding only the norm) and replaces the norm with Identity.
Outputs match the unfolded model within float rounding (tests: rtol 1e-4, atol 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgesmith.compress.contract import BatchNormFolded
from edgesmith.compress.layers import set_module, single_user, trace
from edgesmith.compress.registry import PassInfo


@dataclass(frozen=True)
class FoldBNConfig:
    pass


def fold_bn(model: Any, cfg: FoldBNConfig, ctx: Any) -> Any:
    import torch
    import torch.nn as nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    model.eval()
    gm = trace(model)
    mods = dict(model.named_modules())
    folded, skipped = [], []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(mods.get(node.target), (nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        prev = node.args[0] if node.args else None
        layer = mods.get(prev.target) if getattr(prev, "op", None) == "call_module" else None
        bn = mods[node.target]
        if not isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            skipped.append(f"{node.target} (follows {getattr(prev, 'target', prev)}, not a conv/linear)")
            continue
        if single_user(prev) is not node or not bn.track_running_stats:
            skipped.append(
                f"{node.target} ({prev.target}'s output is also used elsewhere)" if single_user(prev) is not node else f"{node.target} (no running statistics)"
            )
            continue
        fuse = fuse_linear_bn_eval if isinstance(layer, nn.Linear) else fuse_conv_bn_eval
        fused = fuse(layer, bn)
        with torch.no_grad():
            layer.weight.copy_(fused.weight)
            fused_bias: Any = fused.bias  # fusing always yields a bias
            if layer.bias is None:
                layer.bias = nn.Parameter(fused_bias.detach().clone())
            else:
                layer.bias.copy_(fused_bias)
        set_module(model, node.target, nn.Identity())
        folded.append(f"{node.target} -> {prev.target}")
    ctx.note(f"fold_bn: folded {len(folded)} batch norm(s)" + (f"; left {len(skipped)}: {'; '.join(skipped)}" if skipped else ""))
    ctx.details.setdefault("fold_bn", {"folded": folded, "skipped": skipped})
    ctx.records.add(BatchNormFolded(tuple(folded)))
    return model


PASS = PassInfo(
    "fold_bn", "torch", FoldBNConfig, fold_bn, "fold batch norm into the preceding conv/linear (docs/algorithms.md §12)", produces=(BatchNormFolded,)
)
