"""``prune_l0``: TEDDY's parameter sparsification (docs/algorithms.md §4) — projected gradient descent on the ℓ0
ball. After every optimiser step the ⌈p·N⌉ smallest |θ| over all prunable weights *jointly* are set to
zero (one threshold for the whole network, so layers keep what they need), while the model trains with
cross-entropy plus λ·KL(teacher ‖ student), the dense model as teacher (λ = 0.1 by default).

"Parameters" are the weights of conv and linear layers (biases and normalisation scales stay dense: they
are a rounding error of N and zeroing them changes what a layer computes rather than thinning it).
TEDDY's degree-based edge scoring for graph inputs lives in ``edge_scores.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from edgesmith.compress.contract import FloatWeights
from edgesmith.compress.distill.engine import RecoverConfig, recover
from edgesmith.compress.prune.common import check_fraction, dense_copy, prunable_layers, sparsity
from edgesmith.compress.registry import PassInfo


def _default_recover() -> RecoverConfig:
    # CE + λ·KL with λ = 0.1: the engine's Hinton loss weighs (1 − α)·CE + α·KL, so α = λ / (1 + λ)
    return RecoverConfig(loss="kd", alpha=0.1 / 1.1, temperature=1.0, steps=300)


@dataclass(frozen=True)
class L0Config:
    sparsity: float = 0.5  # p: share of the weights zero after every step
    ignore: tuple[str, ...] = ()
    recover: RecoverConfig = field(default_factory=_default_recover)

    def __post_init__(self) -> None:
        check_fraction("sparsity", self.sparsity)


def l0_project(tensors: list[Any], p: float) -> None:
    """Zero, in place, the ⌈p·N⌉ entries of smallest magnitude over all ``tensors`` jointly (N = all their entries)."""
    import torch

    flat = torch.cat([t.detach().abs().flatten() for t in tensors])
    k = math.ceil(p * flat.numel())
    if k <= 0:
        return
    drop = torch.zeros_like(flat, dtype=torch.bool)
    drop[torch.topk(flat, k, largest=False, sorted=False).indices] = True
    at = 0
    with torch.no_grad():
        for t in tensors:
            n = t.numel()
            t.masked_fill_(drop[at : at + n].view_as(t), 0.0)
            at += n


def apply(model: Any, cfg: L0Config, ctx: Any) -> Any:
    import torch

    layers = prunable_layers(model, cfg.ignore, "prune_l0")
    ctx.records.add(FloatWeights({n: m.weight.detach().clone() for n, m in layers}))
    teacher = dense_copy(model)
    weights = [m.weight for _, m in layers]
    with torch.no_grad():
        l0_project(weights, cfg.sparsity)
    fitted = recover(model, teacher, ctx, cfg.recover, f"prune_l0 {cfg.sparsity:.0%}", lambda s, step: l0_project(weights, cfg.sparsity))
    with torch.no_grad():
        l0_project(weights, cfg.sparsity)  # the restored best checkpoint was projected too; once more costs nothing
    got = sparsity(layers)
    ctx.details["prune_l0"] = {"sparsity": got, "recovery": fitted.summary(), "history": fitted.history}
    ctx.note(
        f"prune_l0 (TEDDY): {got['total']:.1%} of {sum(w.numel() for w in weights):,} weights zero, one threshold over "
        f"{len(layers)} layers; trained with the dense model as teacher: {fitted.summary()}"
    )
    return model


PASS = PassInfo(
    "prune_l0",
    "torch",
    L0Config,
    apply,
    "TEDDY (§4): ℓ0-ball projected gradient descent — the smallest weights over the whole network zeroed after every step, distilled from the dense model",
    needs_calibration=True,
    produces=(FloatWeights,),
)
