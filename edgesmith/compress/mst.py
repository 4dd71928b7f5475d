"""MST-compression of binary layers (docs/algorithms.md §3, derived from the abstract — no public code).

For binary weight rows w_i, w_j ∈ {±1}^K and a binary input x, y_j = y_i + 2·Σ_{k∈D_ij} w_j[k]·x[k] with
D_ij the positions where the rows differ: given y_i, y_j costs |D_ij| (their Hamming distance) instead
of K. Over the complete graph of output channels with Hamming edge weights, a minimum spanning tree
orders the computation: the root in full (K), every other channel from its parent. Cost = K + MST weight.

- ``build_tree``: Prim's algorithm from the medoid channel (smallest total distance — a central root keeps
  the tree shallow); among equal-weight choices the node joins the shallowest parent (least depth bounds
  the chain of dependent updates); ``max_depth`` bounds the depth outright.
- ``tree_conv``: the tree-ordered convolution in exact integers (the reference the kernel is tested against).
- ``op_counts``: the paper's measure (binary operations per output position, with and without the tree)
  and a coarse variant counting whole 64-bit words that differ (what a word-level kernel can skip).
- ``tree_penalty``: a training regulariser — the soft sign disagreement between each channel and its tree
  parent, tanh(w/τ) standing in for sign(w); lowering it pulls children's weight signs toward their parents'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Tree:
    parent: np.ndarray  # parent[c] (-1 for the root)
    order: list[int]  # a topological order: every parent before its children
    depth: np.ndarray
    weight: int  # total Hamming distance over the tree's edges
    root: int


def sign_rows(w: np.ndarray) -> np.ndarray:
    """Weights [O, ...] -> ±1 int8 rows [O, K] (sign(0) = +1)."""
    return np.where(w.reshape(w.shape[0], -1) >= 0, 1, -1).astype(np.int8)


def hamming(rows: np.ndarray) -> np.ndarray:
    """[O, K] ±1 rows -> [O, O] Hamming distances (K − dot) / 2."""
    r = rows.astype(np.int32)
    return ((r.shape[1] - r @ r.T) // 2).astype(np.int64)


def build_tree(rows: np.ndarray, max_depth: int | None = None) -> Tree:
    d = hamming(rows)
    n = len(d)
    root = int(np.argmin(d.sum(1)))
    parent = np.full(n, -1, dtype=np.int64)
    depth = np.zeros(n, dtype=np.int64)
    in_tree = np.zeros(n, dtype=bool)
    in_tree[root] = True
    best = d[root].astype(float)  # cheapest known edge into the tree for each node
    via = np.full(n, root)
    order, weight = [root], 0
    limit = max_depth if max_depth is not None else n
    if limit < 1 and n > 1:
        raise ValueError("max_depth must be >= 1 for a layer with more than one output channel")
    for _ in range(n - 1):
        cand = np.where(~in_tree, best, np.inf)
        lo = cand.min()
        ties = np.flatnonzero(cand == lo)
        c = int(ties[np.argmin(depth[via[ties]])])  # equal weight: the one hanging off the shallowest parent
        parent[c], depth[c] = via[c], depth[via[c]] + 1
        in_tree[c] = True
        order.append(c)
        weight += int(d[c, via[c]])
        if depth[c] < limit:  # c can be a parent: offer its edges
            closer = (~in_tree) & ((d[c] < best) | ((d[c] == best) & (depth[c] < depth[via])))
            best = np.where(closer, d[c], best)
            via = np.where(closer, c, via)
        # NOTE: with a depth bound, a node whose cheapest parent is full keeps its next-best offer (root always valid)
    return Tree(parent, order, depth, weight, root)


def chain_weight(rows: np.ndarray) -> int:
    """Σ d(i, i+1): the identity chain (channels in their given order), which an MST never exceeds."""
    d = hamming(rows)
    return int(sum(d[i, i + 1] for i in range(len(d) - 1)))


def tree_conv(x: np.ndarray, w: np.ndarray, tree: Tree, stride=(1, 1), padding=(0, 0), dilation=(1, 1)) -> np.ndarray:
    """Exact integer conv of sign(x) (zero padding) with sign(w), computed in tree order: the root by a full
    dot product, each child as y_parent + 2·Σ_{k∈D} w_child[k]·x[k]. One group."""
    xs = np.pad(np.where(x >= 0, 1, -1).astype(np.int64), ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    rows = sign_rows(w).astype(np.int64)
    o, c, kh, kw = w.shape
    n, _, h, wd = xs.shape
    oh = (h - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = np.stack(
        [
            xs[
                :,
                :,
                r * dilation[0] : r * dilation[0] + stride[0] * (oh - 1) + 1 : stride[0],
                s * dilation[1] : s * dilation[1] + stride[1] * (ow - 1) + 1 : stride[1],
            ]
            for r in range(kh)
            for s in range(kw)
        ],
        axis=2,
    )  # [N, C, KH*KW, OH, OW]
    patches = cols.reshape(n, c * kh * kw, oh * ow)  # K ordered (c, r, s) like the weight rows
    out = np.zeros((n, o, oh * ow), dtype=np.int64)
    out[:, tree.root] = np.einsum("k,nkp->np", rows[tree.root], patches)
    for ch in tree.order[1:]:
        p = tree.parent[ch]
        diff = np.flatnonzero(rows[ch] != rows[p])
        out[:, ch] = out[:, p] + 2 * np.einsum("k,nkp->np", rows[ch, diff], patches[:, diff])
    return out.reshape(n, o, oh, ow)


def op_counts(rows: np.ndarray, tree: Tree, word_bits: int = 64) -> dict[str, int]:
    """Binary operations per output position: direct (O·K) vs tree (K + Σ|D|), and the same in whole words
    (a word of a child is skipped when it equals its parent's word)."""
    o, k = rows.shape
    words = -(-k // word_bits)
    padded = np.pad(rows, ((0, 0), (0, words * word_bits - k)), constant_values=1).reshape(o, words, word_bits)
    word_diff = sum(int((padded[c] != padded[tree.parent[c]]).any(axis=1).sum()) for c in tree.order[1:])
    return {"direct_bits": o * k, "tree_bits": k + tree.weight, "direct_words": o * words, "tree_words": words + word_diff}


def tree_penalty(weight: Any, parent: np.ndarray, tau: float | None = None) -> Any:
    """Soft sign disagreement of every channel with its tree parent: per edge the sum over positions of
    (1 − tanh(w_c/τ)·tanh(w_p/τ)) / 2 — a soft Hamming distance — averaged over edges; differentiable. τ defaults to
    the layer's mean |w| (a fixed small τ saturates tanh and the gradient vanishes: measured, no effect)."""
    import torch

    t = weight.detach().abs().mean().clamp(min=1e-8) if tau is None else tau
    soft = torch.tanh(weight.reshape(weight.shape[0], -1) / t)
    kids = torch.as_tensor(np.flatnonzero(parent >= 0))
    if len(kids) == 0:
        return soft.sum() * 0.0
    parents = torch.as_tensor(parent[kids.numpy()])
    return ((1 - soft[kids] * soft[parents]) / 2).sum(1).mean()  # per edge: a soft Hamming distance
