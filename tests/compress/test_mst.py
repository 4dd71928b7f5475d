"""MST-compression (algorithms.md §3): tree-ordered outputs equal the direct binary convolution exactly,
the MST weighs no more than the identity chain, op counts stay within O·K, a depth bound holds, ties go
to the shallowest parent, and the regulariser lowers the tree's weight."""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith.compress.mst import build_tree, chain_weight, hamming, op_counts, sign_rows, tree_conv
from edgesmith.runtime.kernels import binary as B


@pytest.mark.parametrize(
    "o,c,k,stride,padding,dilation", [(8, 3, 3, (1, 1), (1, 1), (1, 1)), (13, 17, 3, (2, 1), (2, 0), (1, 2)), (16, 70, 1, (1, 1), (0, 0), (1, 1))]
)
def test_tree_outputs_equal_the_direct_binary_conv_exactly(o, c, k, stride, padding, dilation):
    rng = np.random.default_rng(o + c)
    x = rng.standard_normal((2, c, 9, 8)).astype(np.float32)
    w = rng.standard_normal((o, c, k, k)).astype(np.float32)
    tree = build_tree(sign_rows(w))
    direct = B.conv2d_groups(x, w, 1, stride=stride, padding=padding, dilation=dilation)
    np.testing.assert_array_equal(tree_conv(x, w, tree, stride, padding, dilation), direct)


def test_mst_is_no_heavier_than_the_identity_chain_and_counts_are_bounded():
    rng = np.random.default_rng(0)
    base = np.where(rng.random(288) < 0.5, 1, -1)
    rows = np.stack([np.where(rng.random(288) < 0.1, -base, base) for _ in range(32)]).astype(np.int8)  # similar channels
    tree = build_tree(rows)
    assert tree.weight <= chain_weight(rows)
    counts = op_counts(rows, tree)
    assert counts["tree_bits"] <= counts["direct_bits"] and counts["tree_words"] <= counts["direct_words"]
    assert counts["tree_bits"] < 0.3 * counts["direct_bits"]  # 10% flips: children cost ~20% of K
    assert sorted(tree.order) == list(range(32)) and all(tree.parent[c] in tree.order[:i] for i, c in enumerate(tree.order) if i)


@pytest.mark.parametrize("bound", [1, 2, 3])
def test_a_bounded_tree_is_no_deeper_than_the_bound(bound):
    rows = sign_rows(np.random.default_rng(bound).standard_normal((20, 50)))
    tree = build_tree(rows, max_depth=bound)
    assert tree.depth.max() <= bound and tree.weight >= build_tree(rows).weight


def test_equal_weight_ties_join_the_shallowest_parent():
    # root 0; 1 and 2 are one flip from 0; 3 is one flip from 1 and one flip from 0's... built so 3 ties between 0 and 1
    r0 = np.ones(8, dtype=np.int8)
    r1 = r0.copy()
    r1[0] = -1
    r2 = r0.copy()
    r2[1] = -1
    r3 = r0.copy()  # distance 1 to r1 and r2, 2 to r0
    r3[0] = r3[1] = -1
    tree = build_tree(np.stack([r0, r1, r2, r3]))
    assert tree.root == 0 and tree.depth.max() == 2 and tree.weight == 3
    assert hamming(np.stack([r0, r3]))[0, 1] == 2


def test_regulariser_lowers_the_tree_weight():
    import torch

    from edgesmith.compress.mst import tree_penalty

    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(16, 72))
    before = build_tree(sign_rows(w.detach().numpy())).weight
    opt = torch.optim.SGD([w], lr=0.2)
    for step in range(60):
        if step % 20 == 0:
            parent = build_tree(sign_rows(w.detach().numpy())).parent
        loss = tree_penalty(w, parent)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert build_tree(sign_rows(w.detach().numpy())).weight < 0.8 * before  # 444 -> 330 here


@pytest.mark.parametrize("impl", ["portable", "auto"])
@pytest.mark.parametrize("c,padding,stride", [(3, (1, 1), (1, 1)), (70, (2, 1), (2, 1)), (128, (0, 0), (1, 1))])
def test_word_level_tree_kernel_equals_the_direct_kernel(impl, c, padding, stride):
    rng = np.random.default_rng(c)
    base = rng.standard_normal((1, c, 3, 3))
    w = np.concatenate([np.where(rng.random((1, c, 3, 3)) < 0.05, -base, base) for _ in range(12)]).astype(np.float32)
    x = rng.standard_normal((2, c, 7, 6)).astype(np.float32)
    tree = build_tree(sign_rows(w))
    layer = B.TreeConv2d(w, tree.parent, tree.order, stride=stride, padding=padding, threads=2, impl=impl)
    np.testing.assert_array_equal(layer(x), B.conv2d_groups(x, w, 1, stride=stride, padding=padding))
    assert layer.word_ops <= 12 * layer.w.shape[1]
