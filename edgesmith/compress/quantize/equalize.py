"""``equalize``: cross-layer equalisation of consecutive conv/linear pairs (Nagel et al., DFQ 2019).

For a layer pair L1 -> act -> L2 where act is positively homogeneous (ReLU, LeakyReLU, PReLU with one
slope, or nothing) and L1's output feeds only that path: per channel i, with r1 = max|W1[i]| and
r2 = max|W2[:, i]|, s_i = sqrt(r1 r2) / r2; W1[i] /= s_i, b1[i] /= s_i, W2[:, i] *= s_i. The function is
unchanged (act(x/s) = act(x)/s for s > 0) and both layers' per-channel ranges become equal, which is what
per-tensor (and low-bit) weight quantization needs. Repeated ``iterations`` times over all pairs.
Run ``fold_bn`` first: a batch norm between the layers hides the pair (reported, not silently).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgesmith.compress.layers import single_user, trace
from edgesmith.compress.registry import PassInfo


@dataclass(frozen=True)
class EqualizeConfig:
    iterations: int = 2

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")


def find_pairs(model: Any) -> tuple[list[tuple[str, str]], list[str]]:
    """(L1, L2) names of equalisable pairs, and why other conv/linear outputs were not paired."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    gm = trace(model)
    mods = dict(model.named_modules())
    layer_types = (nn.Conv1d, nn.Conv2d, nn.Linear)

    def homogeneous(n: Any) -> bool:
        if n.op == "call_module":
            m = mods.get(n.target)
            return isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.Identity)) or (isinstance(m, nn.PReLU) and m.weight.numel() == 1)
        return n.op == "call_function" and n.target in (F.relu, torch.relu, F.leaky_relu)

    pairs, notes = [], []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(mods.get(node.target), layer_types):
            continue
        cur = single_user(node)
        while cur is not None and homogeneous(cur):
            cur = single_user(cur)
        if cur is None:
            continue
        nxt = mods.get(cur.target) if cur.op == "call_module" else None
        if isinstance(nxt, layer_types):
            l1 = mods[node.target]
            ok = l1.weight.shape[0] == (nxt.weight.shape[1] * getattr(nxt, "groups", 1))
            if ok and (getattr(nxt, "groups", 1) in (1, nxt.weight.shape[0])) and getattr(l1, "groups", 1) in (1, l1.weight.shape[0]):
                pairs.append((node.target, cur.target))
            elif ok:
                notes.append(f"{node.target} -> {cur.target}: grouped convolution, not equalised")
        elif isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d)):
            notes.append(f"{node.target} -> {cur.target}: batch norm in between (run fold_bn first)")
    return pairs, notes


def equalize(model: Any, cfg: EqualizeConfig, ctx: Any) -> Any:
    import torch

    model.eval()
    pairs, notes = find_pairs(model)
    mods = dict(model.named_modules())
    with torch.no_grad():
        for _ in range(cfg.iterations):
            for a, b in pairs:
                _equalize_pair(mods[a], mods[b])
    ctx.note(f"equalize: {len(pairs)} layer pair(s) equalised" + (f"; not equalised: {'; '.join(notes)}" if notes else ""))
    ctx.details["equalize"] = {"pairs": [f"{a} -> {b}" for a, b in pairs], "skipped": notes}
    return model


def _equalize_pair(l1: Any, l2: Any) -> None:
    import torch

    w1 = l1.weight.reshape(l1.weight.shape[0], -1)
    c = w1.shape[0]
    if getattr(l2, "groups", 1) == l2.weight.shape[0] and l2.weight.shape[0] == c and l2.weight.shape[1] == 1:
        r2 = l2.weight.reshape(c, -1).abs().amax(dim=1)  # depthwise: input channel i is output channel i
        view2 = (c,) + (1,) * (l2.weight.dim() - 1)
    else:
        w2 = l2.weight.transpose(0, 1).reshape(c, -1)
        r2 = w2.abs().amax(dim=1)
        view2 = (1, c) + (1,) * (l2.weight.dim() - 2)
    r1 = w1.abs().amax(dim=1)
    s = torch.where((r1 > 0) & (r2 > 0), torch.sqrt(r1 * r2) / r2.clamp(min=1e-12), torch.ones_like(r1))
    l1.weight.div_(s.reshape((c,) + (1,) * (l1.weight.dim() - 1)))
    if l1.bias is not None:
        l1.bias.div_(s)
    l2.weight.mul_(s.reshape(view2))


PASS = PassInfo(
    "equalize",
    "torch",
    EqualizeConfig,
    equalize,
    "cross-layer equalisation of consecutive conv/linear pairs through ReLU-like activations",
    runs_after=("fold_bn",),
)
