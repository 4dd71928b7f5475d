"""The compiled XNOR-popcount kernels equal a straightforward reference exactly, on random inputs of many
shapes (odd channel counts, padding, stride, dilation, groups), on both popcount paths."""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith.runtime.kernels import binary as B

IMPLS = ["portable", "avx2", "avx512"]


def _pm1(a: np.ndarray) -> np.ndarray:
    return np.where(a >= 0, 1, -1).astype(np.int64)  # sign(0) = +1, as the kernel and BinarySign


def _ref_conv(x: np.ndarray, w: np.ndarray, stride, padding, dilation, groups) -> np.ndarray:
    """Direct ±1 convolution with zero padding (what Sign followed by a standard Conv computes)."""
    xs = np.pad(_pm1(x), ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))  # padded zeros count 0
    ws = _pm1(w)
    n, c, h, wd = xs.shape
    o, cg, kh, kw = ws.shape
    oh = (h - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    og = o // groups
    out = np.zeros((n, o, oh, ow), dtype=np.int64)
    for g in range(groups):
        xg = xs[:, g * cg : (g + 1) * cg]
        for r in range(kh):
            for s in range(kw):
                patch = xg[
                    :,
                    :,
                    r * dilation[0] : r * dilation[0] + stride[0] * (oh - 1) + 1 : stride[0],
                    s * dilation[1] : s * dilation[1] + stride[1] * (ow - 1) + 1 : stride[1],
                ]
                out[:, g * og : (g + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[g * og : (g + 1) * og, :, r, s])
    return out


def test_the_cpu_path_is_reported():
    assert B.impl_used("portable") == "portable"
    assert B.impl_used("auto") == ("avx512" if B.has_vpopcntdq() else "avx2")  # x86-64 CI machines all have AVX2
    assert B.impl_used("avx2") == "avx2"  # forced: each SIMD path runs on this host (the tests below use all three)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (3, 5, 63), (4, 7, 64), (5, 3, 65), (2, 9, 511), (6, 4, 512), (3, 3, 513), (8, 16, 2304)])
def test_gemm_equals_reference(impl, m, n, k):
    rng = np.random.default_rng(k)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((n, k)).astype(np.float32)
    a[0, 0] = 0.0  # sign(0) = +1
    got = B.gemm(B.pack_rows(a), B.pack_rows(b), k, threads=2, impl=impl)
    np.testing.assert_array_equal(got, _pm1(a) @ _pm1(b).T)


CASES = [  # (N, C, H, W, O, KH, KW, stride, padding, dilation, groups)
    (1, 3, 7, 7, 5, 3, 3, (1, 1), (1, 1), (1, 1), 1),
    (2, 64, 6, 5, 8, 3, 3, (1, 1), (0, 0), (1, 1), 1),
    (1, 65, 9, 9, 7, 3, 3, (2, 2), (1, 1), (1, 1), 1),
    (1, 130, 8, 8, 4, 1, 1, (1, 1), (0, 0), (1, 1), 1),
    (1, 17, 11, 10, 6, 5, 3, (2, 1), (2, 1), (1, 2), 1),
    (1, 32, 12, 12, 16, 3, 3, (1, 1), (2, 2), (2, 2), 1),
    (2, 12, 7, 7, 6, 3, 3, (1, 1), (1, 1), (1, 1), 3),
    (1, 8, 6, 6, 8, 3, 3, (1, 1), (1, 1), (1, 1), 8),  # depthwise
    (1, 3, 4, 4, 2, 4, 4, (1, 1), (3, 3), (1, 1), 1),  # padding larger than half the kernel
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=[f"c{i}" for i in range(len(CASES))])
def test_conv_equals_reference(impl, case):
    n, c, h, w, o, kh, kw, stride, padding, dilation, groups = case
    rng = np.random.default_rng(sum(case[:7]))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c // groups, kh, kw)).astype(np.float32)
    got = B.conv2d_groups(x, wt, groups, stride=stride, padding=padding, dilation=dilation, threads=2, impl=impl)
    np.testing.assert_array_equal(got, _ref_conv(x, wt, stride, padding, dilation, groups))


@pytest.mark.parametrize("impl", IMPLS)
def test_prepared_layer_equals_reference(impl):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 70, 9, 9)).astype(np.float32)
    w = rng.standard_normal((13, 70, 3, 3)).astype(np.float32)
    layer = B.BinaryConv2d(w, stride=(2, 2), padding=(1, 1), threads=2, impl=impl)
    np.testing.assert_array_equal(layer(x), _ref_conv(x, w, (2, 2), (1, 1), (1, 1), 1))
    np.testing.assert_array_equal(layer(x[:1]), _ref_conv(x[:1], w, (2, 2), (1, 1), (1, 1), 1))  # reused: weights prepared once


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="do not hold"):
        B.gemm(np.zeros((2, 1), np.uint64), np.zeros((2, 2), np.uint64), 64)
    with pytest.raises(ValueError, match="does not fit"):
        B.conv2d(np.zeros((1, 2, 2, 1), np.uint64), np.zeros((1, 5, 5, 1), np.uint64), 3)
    with pytest.raises(ValueError, match="groups"):
        B.conv2d_groups(np.zeros((1, 6, 4, 4), np.float32), np.zeros((4, 4, 3, 3), np.float32), groups=4)


def test_packing_needs_no_compiled_library(monkeypatch):
    """A machine without a compiler still packs (pack_binary, the layers' weights): numpy gives the kernel's bits,
    NaN and -0.0 included, for widths on and off a 64-bit word."""
    from edgesmith.errors import BackendUnavailable

    rng = np.random.default_rng(5)
    for c in (1, 63, 64, 65, 130):
        x = rng.standard_normal((2, c, 3, 4)).astype(np.float32)
        x[0, 0, 0, 0], x[1, -1, 0, 1] = np.nan, -0.0
        rows = x.reshape(2, -1)
        compiled = B.pack_nchw(x), B.pack_rows(rows)
        with monkeypatch.context() as m:

            def missing():
                raise BackendUnavailable("not built")

            m.setattr(B, "library", missing)
            fallback = B.pack_nchw(x), B.pack_rows(rows)
        for a, b in zip(compiled, fallback):
            assert a.dtype == b.dtype == np.uint64 and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
