"""``prune_nm``: N:M structured sparsity (2:4 by default) — in every group of M consecutive weights along
the input dimension, only the N largest in magnitude are kept. Hardware with sparse tensor cores (TensorRT
on Ampere and later, the profile format ``sparse-2:4``) runs it about twice as fast; on a CPU runtime it
runs as dense weights with zeros, and the report says it won't be faster there.

Groups run along the input channels, as TensorRT's structured sparsity expects: a linear weight [out, in]
in groups of M along ``in``; a conv weight [out, in, kh, kw] along ``in`` at each kernel position. A layer
whose input width is not a multiple of M is left dense, and named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgesmith.compress.contract import FloatWeights
from edgesmith.compress.distill.engine import RecoverConfig, recover
from edgesmith.compress.prune.common import apply_masks, dense_copy, prunable_layers, sparsity
from edgesmith.compress.registry import PassInfo


@dataclass(frozen=True)
class NMConfig:
    n: int = 2
    m: int = 4
    ignore: tuple[str, ...] = ()
    recover: RecoverConfig | None = None

    def __post_init__(self) -> None:
        if not (1 <= self.n < self.m <= 64):
            raise ValueError(f"N:M needs 1 <= n < m <= 64, got {self.n}:{self.m}")


def nm_mask(weight: Any, n: int, m: int) -> Any | None:
    """Keep-mask of ``weight`` with the N largest |w| of every M along the input dimension (None: width not a multiple of M)."""
    import torch

    w = weight.detach()
    if w.dim() < 2 or w.shape[1] % m:
        return None
    moved = w.movedim(1, -1)  # [out, (kh, kw,) in]
    groups = moved.abs().reshape(-1, m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(1, torch.topk(groups, n, dim=1).indices, True)
    return keep.reshape(moved.shape).movedim(-1, 1)


def apply(model: Any, cfg: NMConfig, ctx: Any) -> Any:
    import torch

    layers = prunable_layers(model, cfg.ignore, "prune_nm")
    ctx.records.add(FloatWeights({n: m.weight.detach().clone() for n, m in layers}))
    teacher = dense_copy(model) if cfg.recover else None
    masks, dense = {}, []
    for name, mod in layers:
        if getattr(mod, "groups", 1) > 1 and mod.weight.shape[1] == 1:
            dense.append(f"{name} (depthwise)")
            continue
        mask = nm_mask(mod.weight, cfg.n, cfg.m)
        if mask is None:
            dense.append(f"{name} (input width {mod.weight.shape[1]})")
        else:
            masks[name] = mask
    by_name = dict(layers)
    with torch.no_grad():
        apply_masks(masks, by_name)
    fitted = None
    if cfg.recover is not None:
        fitted = recover(model, teacher, ctx, cfg.recover, f"prune_nm {cfg.n}:{cfg.m}", lambda s, step: apply_masks(masks, by_name))
    pruned = [(n, m) for n, m in layers if n in masks]
    got = sparsity(pruned) if pruned else {"total": 0.0}
    accelerated = f"sparse-{cfg.n}:{cfg.m}" in (ctx.profile.precisions if ctx.profile is not None else [])
    ctx.details["prune_nm"] = {
        "n": cfg.n,
        "m": cfg.m,
        "layers": sorted(masks),
        "left_dense": dense,
        "sparsity": got,
        "accelerated_on_target": accelerated,
        **({"recovery": fitted.summary()} if fitted else {}),
    }
    ctx.note(
        f"prune_nm: {cfg.n}:{cfg.m} in {len(masks)} layers ({got['total']:.0%} of their weights zero)"
        + (f"; left dense: {', '.join(dense)}" if dense else "")
        + (f"; recovery: {fitted.summary()}" if fitted else "")
        + ("" if accelerated else f". This target does not list sparse-{cfg.n}:{cfg.m}: it runs the zeros as dense weights, no faster")
    )
    return model


PASS = PassInfo(
    "prune_nm",
    "torch",
    NMConfig,
    apply,
    "N:M structured sparsity (2:4 default) along input channels, for sparse tensor cores; no speed-up on CPU runtimes",
    produces=(FloatWeights,),
)
