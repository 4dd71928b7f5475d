"""``reparam``: deploy-time re-parameterisation folds (docs/algorithms.md §12) — a network trained with extra
structure runs as a plainer one that computes the same function.

- **RIFormer** (``AffineMixerBlock``): a token mixer that is only an affine map after a GroupNorm, used in
  the residual form x + affine(norm(x)) − norm(x). With norm(x) = γ⊙x̂ + β and affine(z) = s⊙z + b this is
  x + γ⊙(s − 1)⊙x̂ + β⊙(s − 1) + b: one GroupNorm with weight γ⊙(s − 1) and bias β⊙(s − 1) + b.
- **RepVGG** (``RepVGGBlock``): a 3×3 conv + BN, a 1×1 conv + BN and (same width, stride 1) an identity BN,
  summed. Each branch folds into a 3×3 kernel and a bias (the 1×1 padded to the centre, the identity as a
  centred one); their sum is one 3×3 conv.

The pass walks the model and replaces every such block with its folded form; outputs agree within float
tolerance (tested at rtol 1e-4, atol 1e-5). Models built from these blocks train with the extra structure
and deploy without it; a model with none is left unchanged, and the report says so. The blocks live in
``edgesmith/zoo/blocks.py`` (torch is imported only when a model uses them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgesmith.compress.registry import PassInfo


def fold_affine_mixer(block: Any) -> Any:
    import torch
    import torch.nn as nn

    from edgesmith.zoo.blocks import FoldedMixer

    n = block.norm
    norm = nn.GroupNorm(n.num_groups, n.num_channels, eps=n.eps)
    s, b = block.mixer.scale.detach(), block.mixer.bias.detach()
    gamma = n.weight.detach() if n.affine else torch.ones_like(s)
    beta = n.bias.detach() if n.affine else torch.zeros_like(s)
    with torch.no_grad():
        norm.weight.copy_(gamma * (s - 1))
        norm.bias.copy_(beta * (s - 1) + b)
    return FoldedMixer(norm)


def _fuse(kernel: Any, bn: Any) -> tuple[Any, Any]:
    std = (bn.running_var + bn.eps).sqrt()
    t = bn.weight / std
    return kernel * t.view(-1, 1, 1, 1), bn.bias - bn.running_mean * t


def fold_repvgg(block: Any) -> Any:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    conv3 = block.dense[0]
    k3, b3 = _fuse(conv3.weight.detach(), block.dense[1])
    k1, b1 = _fuse(F.pad(block.point[0].weight.detach(), [1, 1, 1, 1]), block.point[1])
    kernel, bias = k3 + k1, b3 + b1
    if block.identity is not None:
        per_group = conv3.in_channels // block.groups
        ident = torch.zeros_like(conv3.weight)
        for c in range(conv3.out_channels):
            ident[c, c % per_group, 1, 1] = 1.0
        ki, bi = _fuse(ident, block.identity)
        kernel, bias = kernel + ki, bias + bi
    conv = nn.Conv2d(conv3.in_channels, conv3.out_channels, 3, conv3.stride, 1, groups=block.groups, bias=True)
    with torch.no_grad():
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias.detach())
    return nn.Sequential(conv, nn.ReLU())


def _folds() -> dict:
    from edgesmith.zoo.blocks import AffineMixerBlock, RepVGGBlock

    return {AffineMixerBlock: fold_affine_mixer, RepVGGBlock: fold_repvgg}


@dataclass(frozen=True)
class ReparamConfig:
    pass


def reparameterise(model: Any) -> dict[str, int]:
    """Replace every foldable block in place; returns how many of each kind were folded."""
    folds = _folds()
    counts: dict[str, int] = {}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            fold = folds.get(type(child))
            if fold is not None:
                setattr(parent, name, fold(child.eval()))
                counts[type(child).__name__] = counts.get(type(child).__name__, 0) + 1
    return counts


def apply(model: Any, cfg: ReparamConfig, ctx: Any) -> Any:
    model.eval()
    before = sum(p.numel() for p in model.parameters())
    counts = reparameterise(model)
    after = sum(p.numel() for p in model.parameters())
    ctx.details["reparam"] = {"folded": counts, "parameters": [before, after]}
    ctx.note(
        ("reparam: folded " + ", ".join(f"{n} {k}" for k, n in counts.items()) + f"; parameters {before:,} -> {after:,}")
        if counts
        else "reparam: no RIFormer/RepVGG block in this model: nothing to fold"
    )
    return model


PASS = PassInfo(
    "reparam",
    "torch",
    ReparamConfig,
    apply,
    "deploy-time folds (§12): RIFormer affine token mixers into their GroupNorm, RepVGG branches into one 3x3 conv",
    changes_architecture=True,
)
