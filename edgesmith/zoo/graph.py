"""A small graph model in plain torch and a real graph to run it on, for TEDDY's edge scoring
(compress/prune/edge_scores.py).

The graph: every handwritten digit of scikit-learn's set is a node (64 pixel features), joined to its
``k`` nearest neighbours in pixel space (undirected, self-loops added) — digits of one class cluster, so
it is a homophilous graph like the citation graphs TEDDY was shown on. Node classification is
semi-supervised: a few labelled nodes per class train a two-layer GCN (Kipf & Welling: Â·X·W with
Â = D^-½ (A + I) D^-½), the rest are the test set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgesmith._lazy import require


def digits_graph(k: int = 8, labelled_per_class: int = 10, seed: int = 0) -> dict[str, Any]:
    """Features [N, 64], labels [N], edge_index [2, E] (both directions, self-loops), train/test masks."""
    import torch

    datasets = require("sklearn.datasets")
    digits = datasets.load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    nn_idx = d.topk(k, largest=False).indices
    src = torch.arange(len(x)).repeat_interleave(k)
    dst = nn_idx.flatten()
    pairs = {(min(a, b), max(a, b)) for a, b in zip(src.tolist(), dst.tolist())}
    both = [(a, b) for a, b in pairs] + [(b, a) for a, b in pairs] + [(i, i) for i in range(len(x))]
    edge_index = torch.tensor(both, dtype=torch.long).t().contiguous()
    rng = np.random.default_rng(seed)
    train = torch.zeros(len(x), dtype=torch.bool)
    for c in range(10):
        train[rng.choice(np.nonzero(digits.target == c)[0], labelled_per_class, replace=False)] = True
    return {"x": x, "y": y, "edge_index": edge_index, "train": train, "test": ~train}


def normalised_adjacency(edge_index: Any, num_nodes: int) -> Any:
    """Sparse Â = D^-½ A D^-½ of the given edges (self-loops are expected among them)."""
    import torch

    src, dst = edge_index
    deg = torch.bincount(src, minlength=num_nodes).float().clamp(min=1)
    w = deg[src].rsqrt() * deg[dst].rsqrt()
    return torch.sparse_coo_tensor(edge_index, w, (num_nodes, num_nodes), check_invariants=True).coalesce()


def gcn(in_features: int = 64, hidden: int = 32, classes: int = 10, seed: int = 0) -> Any:
    """Two-layer GCN: forward(x, adj) with ``adj`` from ``normalised_adjacency``."""
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)

    class GCN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin1 = nn.Linear(in_features, hidden)
            self.lin2 = nn.Linear(hidden, classes)

        def forward(self, x: Any, adj: Any) -> Any:
            h = torch.relu(torch.sparse.mm(adj, self.lin1(x)))
            return torch.sparse.mm(adj, self.lin2(h))

    return GCN()


def train_gcn(graph: dict, edge_index: Any, epochs: int = 200, seed: int = 0) -> tuple[Any, float]:
    """Fit a GCN on ``graph``'s labelled nodes over ``edge_index``; returns the model and its test accuracy (%)."""
    import torch
    import torch.nn.functional as F

    model = gcn(graph["x"].shape[1], seed=seed)
    adj = normalised_adjacency(edge_index, len(graph["x"]))
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    for _ in range(epochs):
        model.train()
        loss = F.cross_entropy(model(graph["x"], adj)[graph["train"]], graph["y"][graph["train"]])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(graph["x"], adj).argmax(1)
    return model, float((pred[graph["test"]] == graph["y"][graph["test"]]).float().mean()) * 100
