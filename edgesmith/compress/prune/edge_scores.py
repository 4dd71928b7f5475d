"""TEDDY's degree-based edge scores for graph inputs (docs/algorithms.md §4, step 1) and one-shot edge dropping.

For an undirected graph with degrees d: g(v) = (1/d_v)·Σ_{u∈N(v)} d_u^(−½), and the score of edge (u, v)
is T(u, v) = (g(u)/d_u)·(g(v)/d_v) — low for edges between well-connected nodes whose neighbourhoods
carry the information anyway. ``drop_edges`` removes the lowest-scoring fraction once; self-loops are
never dropped. Edges are a [2, E] index tensor, both directions listed as separate columns.
"""

from __future__ import annotations

import math
from typing import Any


def degrees(edge_index: Any, num_nodes: int) -> Any:
    """Degree of each node over non-self-loop edges (each undirected edge listed in both directions)."""
    import torch

    src, dst = edge_index
    real = src != dst
    return torch.bincount(src[real], minlength=num_nodes).to(torch.float64)


def edge_scores(edge_index: Any, num_nodes: int) -> Any:
    import torch

    d = degrees(edge_index, num_nodes)
    src, dst = edge_index
    real = src != dst
    inv_sqrt = torch.where(d > 0, d.clamp(min=1).rsqrt(), torch.zeros_like(d))
    g = torch.zeros(num_nodes, dtype=torch.float64).index_add_(0, src[real], inv_sqrt[dst[real]])
    g = torch.where(d > 0, g / d.clamp(min=1), torch.zeros_like(g))
    per_node = torch.where(d > 0, g / d.clamp(min=1), torch.zeros_like(g))
    return per_node[src] * per_node[dst]


def drop_edges(edge_index: Any, num_nodes: int, fraction: float) -> Any:
    """The graph without the lowest-scoring ``fraction`` of its non-self-loop edges (both directions of a pair go together)."""
    import torch

    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    src, dst = edge_index
    loops = src == dst
    scores = edge_scores(edge_index, num_nodes)
    # an undirected edge once: the column with src < dst stands for the pair
    one_way = (~loops) & (src < dst)
    idx = one_way.nonzero().flatten()
    k = math.floor(fraction * len(idx))
    if k == 0:
        return edge_index.clone()
    drop_pairs = idx[torch.argsort(scores[idx], stable=True)[:k]]
    dropped = set(zip(src[drop_pairs].tolist(), dst[drop_pairs].tolist()))
    keep = torch.tensor(
        [bool(loop) or (min(u, v), max(u, v)) not in dropped for u, v, loop in zip(src.tolist(), dst.tolist(), loops.tolist())], dtype=torch.bool
    )
    return edge_index[:, keep]
