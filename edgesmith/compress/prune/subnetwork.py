"""``subnetwork``: find a subnetwork of a randomly initialised network instead of training its weights —
Edge-Popup (Ramanujan et al. 2020) or Biprop (binary weights, Diffenderfer & Kailkhura 2021) — with
Iterative Weight Recycling (Gorbett & Whitley 2023), as docs/algorithms.md §5 states them.

1. The weights are frozen (re-initialised to the signed Kaiming constant, scaled for the kept share, unless
   ``reinit: false``); a score per weight is learned. The forward pass uses W ⊙ M with M the top ``keep``
   share of |S| (exactly ⌊keep·numel⌋ entries); the gradient reaches S straight through the mask.
2. Biprop uses W_b = sign(W) ⊙ M · α with α = ‖|W| ⊙ M‖₁ / |M|, the mean |W| over kept entries.
3. Recycling: every ``recycle_every`` epochs the weights at the top ``recycle_fraction`` of scores are
   copied into the positions of the lowest scores — only low-score positions change.
Training: SGD (momentum 0.9, weight decay 5e-4 on the scores) with a cosine schedule, cross-entropy on the
recipe's labelled calibration data; batch norms non-affine (scale 1, shift 0 frozen). The result is baked
into ordinary conv/linear weights (zeros where masked) and runs anywhere.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgesmith.compress.distill.engine import labelled_tensors, predict, split_train_val
from edgesmith.compress.layers import set_module
from edgesmith.compress.prune.common import check_fraction, prunable_layers
from edgesmith.compress.registry import PassInfo
from edgesmith.errors import ConfigError


@dataclass(frozen=True)
class SubnetworkConfig:
    method: Literal["edge-popup", "biprop"] = "edge-popup"
    keep: float = 0.5  # share of each layer's weights in the subnetwork
    recycle: bool = True
    recycle_every: float = 2.0  # epochs between recycling steps
    recycle_fraction: float = 0.1
    epochs: float = 10.0
    lr: float = 0.1
    batch_size: int = 64
    reinit: bool = True  # signed Kaiming constant weights (the paper's setting); false: search in the given weights
    ignore: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        check_fraction("keep", self.keep)
        check_fraction("recycle_fraction", self.recycle_fraction)
        if self.epochs <= 0 or self.recycle_every <= 0 or self.lr <= 0 or self.batch_size < 1:
            raise ValueError("epochs, recycle_every and lr must be > 0 and batch_size >= 1")


def subnet_mask(scores: Any, keep: float) -> Any:
    """Boolean mask of the ⌊keep·numel⌋ largest |scores|."""
    import torch

    flat = scores.detach().abs().flatten()
    k = max(1, math.floor(keep * flat.numel()))
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[torch.topk(flat, k).indices] = True
    return mask.view_as(scores)


@functools.lru_cache(maxsize=1)
def _mask_function() -> Any:
    import torch

    class _Mask(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, s: Any, keep: float) -> Any:  # noqa: ARG004
            return subnet_mask(s, keep).to(s.dtype)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:  # noqa: ARG004
            return grad, None  # straight through to the scores

    return _Mask


def subnet_mask_ste(scores: Any, keep: float) -> Any:
    """The top-``keep`` mask of ``scores`` as a float tensor whose gradient passes straight through to the scores
    (Edge-Popup / Biprop here, binarize's optional masks)."""
    return _mask_function().apply(scores, keep)


def biprop_alpha(weight: Any, mask: Any) -> Any:
    """α = ‖|W| ⊙ M‖₁ / |M|: the mean magnitude of the kept weights."""
    return (weight.abs() * mask).sum() / mask.sum().clamp(min=1)


def recycle_weights(weight: Any, scores: Any, fraction: float) -> Any:
    """In place: the weights at the top ``fraction`` of |scores| copied into the bottom ``fraction``'s positions.
    Returns the (low, high) flat indices used."""
    import torch

    flat_s = scores.detach().abs().flatten()
    m = math.floor(fraction * flat_s.numel())
    if m == 0:
        return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    order = torch.argsort(flat_s, stable=True)
    low, high = order[:m], order.flip(0)[:m]
    flat_w = weight.data.view(-1)
    flat_w[low] = flat_w[high].clone()
    return low, high


def _subnet_layer(layer: Any, cfg: SubnetworkConfig) -> Any:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class SubnetLayer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer
            self.scores = nn.Parameter(torch.empty_like(layer.weight))
            nn.init.kaiming_uniform_(self.scores, a=math.sqrt(5))
            layer.weight.requires_grad_(False)
            if layer.bias is not None:
                layer.bias.requires_grad_(False)

        def effective_weight(self) -> Any:
            mask = subnet_mask_ste(self.scores.abs(), cfg.keep)  # NOTE: abs outside the STE, so the gradient reaches S with its sign
            w = self.layer.weight
            if cfg.method == "biprop":
                return torch.sign(w) * mask * biprop_alpha(w, mask.detach())
            return w * mask

        def forward(self, x: Any) -> Any:
            w = self.effective_weight()
            if isinstance(self.layer, nn.Linear):
                return F.linear(x, w, self.layer.bias)
            return self.layer._conv_forward(x, w, self.layer.bias)

    return SubnetLayer()


def _signed_constant_(layer: Any, keep: float, gen: Any) -> None:
    import torch

    fan_in = layer.weight[0].numel()
    std = math.sqrt(2.0 / fan_in) / math.sqrt(keep)  # scaled: only ``keep`` of the inputs remain
    signs = torch.randint(0, 2, layer.weight.shape, generator=gen).float() * 2 - 1
    with torch.no_grad():
        layer.weight.copy_(signs * std)
        if layer.bias is not None:
            layer.bias.zero_()


def apply(model: Any, cfg: SubnetworkConfig, ctx: Any) -> Any:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    data = ctx.calibration
    if data is None or not data.has_labels:
        raise ConfigError(
            "subnetwork trains scores on labelled data, and the run has none",
            hint="give labelled calibration data (npz key `labels`, or a built-in dataset such as digits)",
        )
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    layers = prunable_layers(model, cfg.ignore, "subnetwork")
    for m in model.modules():  # non-affine batch norms
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            with torch.no_grad():
                m.weight.fill_(1.0)
                m.bias.zero_()
            m.weight.requires_grad_(False)
            m.bias.requires_grad_(False)
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = {}
    for name, layer in layers:
        if cfg.reinit:
            _signed_constant_(layer, cfg.keep, gen)
        wrapped[name] = _subnet_layer(layer, cfg)
        set_module(model, name, wrapped[name])
    names = [s.name for s in ctx.input_specs]
    x, y = labelled_tensors(data, names)
    (xt, yt), (xv, yv) = split_train_val(x, y, 0.1, cfg.seed)
    n = len(yt)
    per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total = max(1, round(cfg.epochs * per_epoch))
    every = max(1, round(cfg.recycle_every * per_epoch))
    scores = [w.scores for w in wrapped.values()]
    opt = torch.optim.SGD(scores, lr=cfg.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    take = (lambda t, i: tuple(a[i] for a in t)) if isinstance(xt, tuple) else (lambda t, i: t[i])  # noqa: E731
    call = (lambda m, t: m(*t)) if isinstance(xt, tuple) else (lambda m, t: m(t))  # noqa: E731
    recycled = 0
    for step in range(1, total + 1):
        model.train()
        idx = torch.randint(0, n, (min(cfg.batch_size, n),), generator=gen)
        out = call(model, take(xt, idx))
        loss = F.cross_entropy(out[0] if isinstance(out, (tuple, list)) else out, yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if cfg.recycle and step % every == 0 and step < total:
            with torch.no_grad():
                for w in wrapped.values():
                    recycle_weights(w.layer.weight, w.scores, cfg.recycle_fraction)
            recycled += 1
    model.eval()
    val_top1 = float((predict(model, xv).argmax(1) == yv).float().mean()) * 100 if len(yv) else float("nan")
    with torch.no_grad():  # bake the subnetwork into plain weights
        for name, w in wrapped.items():
            w.layer.weight.copy_(w.effective_weight())
            set_module(model, name, w.layer)
    for p in model.parameters():
        p.requires_grad_(True)
    kept = float(np.mean([float((m.weight != 0).float().mean()) for _, m in layers]))
    ctx.details["subnetwork"] = {
        "method": cfg.method,
        "keep": cfg.keep,
        "recycling": cfg.recycle,
        "recycled": recycled,
        "steps": total,
        "held_out_top1": round(val_top1, 2),
        "kept_share": round(kept, 4),
    }
    ctx.note(
        f"subnetwork: {cfg.method} keeping {cfg.keep:.0%} of {'re-initialised ' if cfg.reinit else ''}weights, "
        f"{total} steps"
        + (f", weights recycled {recycled}x" if cfg.recycle else ", no recycling")
        + f"; held-out top-1 {val_top1:.2f} (10% of the calibration data)"
    )
    return model


PASS = PassInfo(
    "subnetwork",
    "torch",
    SubnetworkConfig,
    apply,
    "Edge-Popup / Biprop subnetworks of a random network with Iterative Weight Recycling (§5): scores learned, weights frozen",
    needs_calibration=True,
)
