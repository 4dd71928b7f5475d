"""Python face of the compiled XNOR-popcount kernels (``bnn.cpp``): pack signs, binary GEMM, binary conv.

Results are the exact integer ±1 dot products (``int32``); scaling by α happens outside. ``impl``: "auto"
(AVX-512 VPOPCNTDQ when the CPU has it, else AVX2, else portable), "portable" (a SWAR popcount: stands for
targets without a popcount instruction), "avx512" or "avx2" (forced; a CPU without it falls back to the next
narrower path it has — ``impl_used`` says).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.errors import BackendUnavailable

IMPLS = {"auto": 0, "portable": 1, "avx512": 2, "avx2": 3}
_u64p = ctypes.POINTER(ctypes.c_uint64)
_i32p = ctypes.POINTER(ctypes.c_int32)
_f32p = ctypes.POINTER(ctypes.c_float)
_i64 = ctypes.c_int64


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    here = Path(__file__).parent
    found = [here / f"_bnn{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES if (here / f"_bnn{suffix}").is_file()]
    if not found:
        raise BackendUnavailable(
            "the binary-network kernel (edgesmith/runtime/kernels/_bnn) is not built",
            hint="reinstall edgesmith with a C++ compiler present (`pip install -e .` builds it); "
            "the binary layers' standard-op lowering (lower_custom_ops) runs without it",
        )
    lib = ctypes.CDLL(str(found[0]))
    lib.bnn_has_vpopcntdq.restype = ctypes.c_int
    lib.bnn_impl_used.restype = ctypes.c_int
    lib.bnn_impl_used.argtypes = [ctypes.c_int]
    lib.bnn_pack_signs.argtypes = [_f32p, _i64, _i64, _u64p]
    lib.bnn_gemm.argtypes = [_u64p, _u64p, _i64, _i64, _i64, _i64, _i32p, ctypes.c_int, ctypes.c_int]
    lib.bnn_conv2d.argtypes = [_u64p, _u64p, *([_i64] * 14), _i32p, ctypes.c_int, ctypes.c_int]
    lib.bnn_pack_nchw.argtypes = [_f32p, _i64, _i64, _i64, _i64, _u64p, ctypes.c_int]
    _i64p = ctypes.POINTER(ctypes.c_int64)
    lib.bnn_conv2d_tree.argtypes = [_u64p, _u64p, _i64p, _i64p, _u64p, _i64p, _i64p, *([_i64] * 14), _i32p, ctypes.c_int, ctypes.c_int]
    lib.bnn_prepare_conv.argtypes = [_u64p, _i64, _i64, _i64, _i64, _u64p, ctypes.POINTER(ctypes.c_int64)]
    lib.bnn_conv2d_prepared.argtypes = [_u64p, _u64p, ctypes.POINTER(ctypes.c_int64), *([_i64] * 14), _i32p, ctypes.c_int, ctypes.c_int]
    # addresses as plain integers: building ctypes pointer objects cost 1.6 us each, a tenth of a small layer
    _vp = ctypes.c_void_p
    lib.bnn_conv2d_float.argtypes = [_vp, _vp, _vp, _vp] + [_i64] * 14 + [_vp, ctypes.c_int, ctypes.c_int]
    return lib


def has_vpopcntdq() -> bool:
    return bool(library().bnn_has_vpopcntdq())


def impl_used(impl: str = "auto") -> str:
    return {1: "portable", 2: "avx512", 3: "avx2"}[library().bnn_impl_used(IMPLS[impl])]


def _p(a: np.ndarray, t: Any) -> Any:
    return a.ctypes.data_as(t)


def _built() -> bool:
    try:
        library()
        return True
    except BackendUnavailable:
        return False


def _pack_last_axis(x: np.ndarray) -> np.ndarray:
    """numpy's packing, the same bits as the kernel's: bit j of word w is ``x[..., 64w + j] >= 0`` (NaN: 0),
    the tail of the last word zero. Packing needs no compiled code: a machine without a compiler still packs."""
    k = x.shape[-1]
    bits = np.zeros((*x.shape[:-1], 64 * ((k + 63) // 64)), dtype=bool)
    bits[..., :k] = x >= 0
    return np.packbits(bits, axis=-1, bitorder="little").view("<u8").astype(np.uint64)


def pack_rows(x: np.ndarray) -> np.ndarray:
    """[rows, k] floats -> [rows, ceil(k/64)] uint64 sign bits (bit set: x >= 0)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, k = x.shape
    if not _built():
        return _pack_last_axis(x)
    out = np.empty((rows, (k + 63) // 64), dtype=np.uint64)
    library().bnn_pack_signs(_p(x, _f32p), rows, k, _p(out, _u64p))
    return out


def pack_nchw(x: np.ndarray, threads: int = 1) -> np.ndarray:
    """[N, C, H, W] -> channels-last packed [N, H, W, ceil(C/64)] (activations, or weights as [O, KH, KW, CW])."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, c, h, w = x.shape
    if not _built():
        return np.ascontiguousarray(_pack_last_axis(x.transpose(0, 2, 3, 1)))
    out = np.empty((n, h, w, (c + 63) // 64), dtype=np.uint64)
    library().bnn_pack_nchw(_p(x, _f32p), n, c, h, w, _p(out, _u64p), threads)
    return out


def gemm(a_bits: np.ndarray, b_bits: np.ndarray, k: int, threads: int = 1, impl: str = "auto") -> np.ndarray:
    """[M, W] x [N, W] packed rows -> [M, N] int32 ±1 dot products over ``k`` real bits."""
    a_bits, b_bits = np.ascontiguousarray(a_bits, np.uint64), np.ascontiguousarray(b_bits, np.uint64)
    if a_bits.shape[1] != b_bits.shape[1] or a_bits.shape[1] != (k + 63) // 64:
        raise ValueError(f"packed widths {a_bits.shape[1]} and {b_bits.shape[1]} do not hold k={k} bits")
    out = np.empty((a_bits.shape[0], b_bits.shape[0]), dtype=np.int32)
    library().bnn_gemm(_p(a_bits, _u64p), _p(b_bits, _u64p), a_bits.shape[0], b_bits.shape[0], a_bits.shape[1], k, _p(out, _i32p), threads, IMPLS[impl])
    return out


def conv2d(
    x_bits: np.ndarray,
    w_bits: np.ndarray,
    channels: int,
    stride: tuple = (1, 1),
    padding: tuple = (0, 0),
    dilation: tuple = (1, 1),
    threads: int = 1,
    impl: str = "auto",
) -> np.ndarray:
    """Packed activations [N, H, W, CW] and weights [O, KH, KW, CW] (``channels`` real input channels, one
    group) -> [N, O, OH, OW] int32 ±1 convolution, zero padding contributing nothing."""
    x_bits, w_bits = np.ascontiguousarray(x_bits, np.uint64), np.ascontiguousarray(w_bits, np.uint64)
    n, h, w, cw = x_bits.shape
    o, kh, kw, cw2 = w_bits.shape
    if cw != cw2 or cw != (channels + 63) // 64:
        raise ValueError(f"packed channel words {cw} and {cw2} do not hold {channels} channels")
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"a {kh}x{kw} kernel does not fit a {h}x{w} input with padding {padding} and dilation {dilation}")
    out = np.empty((n, o, oh, ow), dtype=np.int32)
    library().bnn_conv2d(
        _p(x_bits, _u64p),
        _p(w_bits, _u64p),
        n,
        h,
        w,
        cw,
        channels,
        o,
        kh,
        kw,
        stride[0],
        stride[1],
        padding[0],
        padding[1],
        dilation[0],
        dilation[1],
        _p(out, _i32p),
        threads,
        IMPLS[impl],
    )
    return out


def conv2d_groups(x: np.ndarray, w_sign: np.ndarray, groups: int = 1, **kw: Any) -> np.ndarray:
    """Binary conv of float activations ``x`` [N, C, H, W] (signs taken) with ±1 weights [O, C/groups, KH, KW]."""
    n, c, _, _ = x.shape
    o, cg = w_sign.shape[:2]
    if c % groups or o % groups or c // groups != cg:
        raise ValueError(f"{c} input channels, {o} outputs and weights for {cg} per group do not fit {groups} groups")
    return BinaryConv2d(w_sign, groups=groups, **kw)(x)


class BinaryConv2d:
    """A binary conv with its weights prepared once (packed, interleaved by 8 outputs, block popcounts), as a
    runtime holds a loaded layer: ``__call__(x)`` signs-and-packs float activations and convolves."""

    def __init__(
        self,
        w_sign: np.ndarray,
        stride: tuple = (1, 1),
        padding: tuple = (0, 0),
        dilation: tuple = (1, 1),
        threads: int = 1,
        impl: str = "auto",
        groups: int = 1,
    ):
        o, cg = w_sign.shape[:2]
        og = o // groups
        self._init(np.concatenate([pack_nchw(w_sign[g * og : (g + 1) * og]) for g in range(groups)]), cg, groups, stride, padding, dilation, threads, impl)

    @classmethod
    def from_packed(
        cls,
        bits: np.ndarray,
        channels_per_group: int,
        groups: int = 1,
        stride: tuple = (1, 1),
        padding: tuple = (0, 0),
        dilation: tuple = (1, 1),
        threads: int = 1,
        impl: str = "auto",
    ) -> BinaryConv2d:
        """From stored bits [O, KH, KW, ceil(Cg/64)] (what the edgesmith.BinaryConv op carries)."""
        self = cls.__new__(cls)
        self._init(np.ascontiguousarray(bits, dtype=np.uint64), channels_per_group, groups, stride, padding, dilation, threads, impl)
        return self

    def _init(self, packed: np.ndarray, cg: int, groups: int, stride: tuple, padding: tuple, dilation: tuple, threads: int, impl: str) -> None:
        if packed.ndim != 4:
            raise ValueError(f"packed weights must be [O, KH, KW, words], got shape {packed.shape}")
        if groups < 1 or cg < 1 or min(stride) < 1 or min(dilation) < 1 or min(padding) < 0 or len(stride) != 2 or len(dilation) != 2 or len(padding) != 2:
            raise ValueError(
                f"a binary conv needs groups, channels, strides and dilations >= 1 and pads >= 0 (got {groups}, {cg}, {stride}, {dilation}, {padding})"
            )
        if impl not in IMPLS or threads < 1:
            raise ValueError(f"impl must be one of {sorted(IMPLS)} and threads >= 1")
        self.o, self.kh, self.kw, self.cw = packed.shape
        self.cg, self.groups, self.c = cg, groups, cg * groups
        if self.cw != (cg + 63) // 64 or self.o % groups:
            raise ValueError(f"packed weights {packed.shape} do not fit {cg} channels per group and {groups} groups")
        if not (1 <= self.kh <= 64 and 1 <= self.kw <= 64) or self.o < 1:
            raise ValueError(f"a {self.kh}x{self.kw} kernel: the binary kernel takes kernels up to 64 wide and high")
        og = self.o // groups
        self.prepared = []
        for g in range(groups):
            part = np.ascontiguousarray(packed[g * og : (g + 1) * og])
            wb = np.zeros(((og + 7) // 8) * self.kh * self.kw * self.cw * 8, dtype=np.uint64)
            pop = np.zeros(og * self.kh * self.kw, dtype=np.int64)
            library().bnn_prepare_conv(_p(part, _u64p), og, self.kh, self.kw, self.cw, _p(wb, _u64p), pop.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)))
            self.prepared.append((wb, pop, wb.ctypes.data, pop.ctypes.data))  # addresses once: the arrays live as long as the layer
        self.stride, self.padding, self.dilation, self.threads, self.impl = stride, padding, dilation, threads, IMPLS[impl]
        self._fn = library().bnn_conv2d_float
        self._scratch = threading.local()  # per thread: the packed-activation buffer of the last input shape

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, c, h, w = x.shape
        if c != self.c:
            raise ValueError(f"input has {c} channels, the layer takes {self.c}")
        if self.groups > 1:
            og = self.o // self.groups
            return np.concatenate(
                [self._one(np.ascontiguousarray(x[:, g * self.cg : (g + 1) * self.cg]), *self.prepared[g], og) for g in range(self.groups)], axis=1
            )
        return self._one(x, *self.prepared[0], self.o)

    def _one(self, x: np.ndarray, wb: np.ndarray, pop: np.ndarray, wb_addr: int, pop_addr: int, o: int) -> np.ndarray:
        n, c, h, w = x.shape
        x = np.ascontiguousarray(x, dtype=np.float32)
        held = getattr(self._scratch, "buf", None)
        if held is None or held[0] != (n, h, w):  # the sign bits, packed inside the same kernel call
            buf = np.empty((n, h, w, self.cw), dtype=np.uint64)
            held = self._scratch.buf = ((n, h, w), buf, buf.ctypes.data)
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (self.kh - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.dilation[1] * (self.kw - 1) - 1) // self.stride[1] + 1
        if oh < 1 or ow < 1:
            raise ValueError(f"a {self.kh}x{self.kw} kernel does not fit a {h}x{w} input")
        out = np.empty((n, o, oh, ow), dtype=np.int32)
        self._fn(
            x.ctypes.data,
            held[2],
            wb_addr,
            pop_addr,
            n,
            h,
            w,
            self.cw,
            c,
            o,
            self.kh,
            self.kw,
            self.stride[0],
            self.stride[1],
            self.padding[0],
            self.padding[1],
            self.dilation[0],
            self.dilation[1],
            out.ctypes.data,
            self.threads,
            self.impl,
        )
        return out


class TreeConv2d:
    """A binary conv computed in MST order (compress/mst.py) at word level: the root channel in full, each
    other channel from its parent over the 64-bit words where their weights differ. ``impl``: "portable"
    (SWAR popcount) or "auto" (the CPU's scalar POPCNT). One group. Same integers as ``conv2d``."""

    def __init__(
        self,
        w_sign: np.ndarray,
        parent: np.ndarray,
        order: list,
        stride: tuple = (1, 1),
        padding: tuple = (0, 0),
        dilation: tuple = (1, 1),
        threads: int = 1,
        impl: str = "auto",
    ):
        self.o, self.c, self.kh, self.kw = w_sign.shape
        self.cw = (self.c + 63) // 64
        self.w = np.ascontiguousarray(pack_nchw(w_sign).reshape(self.o, -1))
        self.order = np.asarray(order, dtype=np.int64)
        self.parent = np.asarray(parent, dtype=np.int64)
        dm = np.zeros_like(self.w)
        kids = self.parent >= 0
        dm[kids] = self.w[kids] ^ self.w[self.parent[kids]]
        self.dmask = dm
        lists = [np.flatnonzero(dm[ch]) for ch in range(self.o)]
        self.word_ptr = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
        self.words = np.concatenate(lists).astype(np.int64) if lists else np.zeros(0, np.int64)
        self.stride, self.padding, self.dilation, self.threads, self.impl = stride, padding, dilation, threads, IMPLS[impl]

    @property
    def word_ops(self) -> int:
        """Word popcounts per output position: the root's K words plus each child's differing words."""
        return int(self.w.shape[1] + len(self.words))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, c, h, w = x.shape
        xb = pack_nchw(x, self.threads)
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (self.kh - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.dilation[1] * (self.kw - 1) - 1) // self.stride[1] + 1
        out = np.empty((n, self.o, oh, ow), dtype=np.int32)
        i64 = lambda a: a.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))  # noqa: E731
        library().bnn_conv2d_tree(
            _p(xb, _u64p),
            _p(self.w, _u64p),
            i64(self.order),
            i64(self.parent),
            _p(self.dmask, _u64p),
            i64(self.word_ptr),
            i64(self.words),
            n,
            h,
            w,
            self.cw,
            c,
            self.o,
            self.kh,
            self.kw,
            self.stride[0],
            self.stride[1],
            self.padding[0],
            self.padding[1],
            self.dilation[0],
            self.dilation[1],
            _p(out, _i32p),
            self.threads,
            self.impl,
        )
        return out
