"""``edgesmith.BinaryConv``: a binary convolution with bit-packed weights —
Y = α ⊙ conv(sign(X − β), sign(W)) + bias, sign(0) = +1, zero padding contributing nothing.

Inputs: X (float, NCHW), W (uint8 [O, KH, KW, 8·ceil(C/group/64)]: the little-endian bytes of the sign-bit
words, channels-last, as the kernels store them — bytes because OpenVINO's CPU plugin narrows 64-bit
integer constants to i32), alpha (float [O]), beta (float [C]), bias (float [O]). Attributes: channels (C),
group, stride_h/w, pad_h/w, dilation_h/w.

- ONNX Runtime: a custom op of onnxruntime-extensions whose body calls the compiled XNOR-popcount kernel
  (``runtime/kernels/binary.py``); the arithmetic runs there, never in Python loops. Weights are prepared
  (interleaved) once per weight buffer and cached.
- OpenVINO: a compiled extension (a custom ``ov::op::Op`` whose ``evaluate`` calls the same kernel), built on
  first use against the wheel's headers; without a compiler, a conversion into OpenVINO's float ops.
- Lowering (any runtime): GreaterOrEqual(X, β) → Where(1, −1) → Conv with the unpacked ±α weights — the
  same numbers in float.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import numpy as np

from edgesmith.environment import bnn_threads
from edgesmith.errors import BackendUnavailable, InputError
from edgesmith.runtime.kernels.binary import BinaryConv2d
from edgesmith.runtime.kernels.ov_extension import library_path
from edgesmith.runtime.ops import ortx

DOMAIN = "edgesmith"
OP = "BinaryConv"
INT_ATTRS = ("channels", "group", "stride_h", "stride_w", "pad_h", "pad_w", "dilation_h", "dilation_w")


def words(stored: np.ndarray) -> np.ndarray:
    """The op's uint8 weight bytes [O, KH, KW, 8·CW] as the kernel's uint64 words [O, KH, KW, CW]."""
    b = np.ascontiguousarray(stored, dtype=np.uint8)
    return b.view("<u8").reshape(*b.shape[:3], -1).astype(np.uint64)


def unpack_weights(stored: np.ndarray, channels_per_group: int) -> np.ndarray:
    """uint8 [O, KH, KW, 8·CW] sign-bit bytes -> ±1 float32 [O, Cg, KH, KW]."""
    as_bytes = np.ascontiguousarray(stored, dtype=np.uint8)
    signs = np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :channels_per_group].astype(np.float32)
    return (2 * signs - 1).transpose(0, 3, 1, 2).copy()


ONE_BY_DEFAULT = ("group", "stride_h", "stride_w", "dilation_h", "dilation_w")


def attr_values(get: Any) -> dict[str, int]:
    """The op's integer attributes through ``get(name, default)`` (an ONNX node's, ORT's or OpenVINO's accessor)."""
    return {k: int(get(k, 1 if k in ONE_BY_DEFAULT else 0)) for k in INT_ATTRS}


def _attrs(node: Any) -> dict[str, int]:
    return attr_values({a.name: a.i for a in node.attribute}.get)


MAX_ATTR = 1 << 20  # strides, pads, dilations, groups and channels beyond this are no real layer


def check(a: dict[str, int], w_shape: tuple, alpha: int, beta: int, bias: int, x_shape: tuple | None = None, name: str = "") -> None:
    """Every attribute and size of one ``edgesmith.BinaryConv`` node, before any kernel touches memory (the
    ONNX Runtime op, the lowering, OpenVINO's float conversion and the packing code all call it; the compiled
    OpenVINO op checks the same in C++). One error naming the node."""

    def bad(what: str) -> InputError:
        return InputError(f"edgesmith.BinaryConv node {name or '?'}: {what}", hint="the model is malformed: rebuild it with edgesmith (binarize pass)")

    for k, lo in (("group", 1), ("stride_h", 1), ("stride_w", 1), ("dilation_h", 1), ("dilation_w", 1), ("pad_h", 0), ("pad_w", 0), ("channels", 1)):
        if not lo <= a[k] <= MAX_ATTR:
            raise bad(f"{k} must be {lo} to {MAX_ATTR}, got {a[k]}")
    if a["channels"] % a["group"]:
        raise bad(f"channels ({a['channels']}) must be a multiple of group ({a['group']})")
    cw = (a["channels"] // a["group"] + 63) // 64
    if len(w_shape) != 4 or w_shape[3] != 8 * cw:
        raise bad(f"packed weights {list(w_shape)} must be [O, KH, KW, {8 * cw}] bytes for {a['channels'] // a['group']} channels per group")
    o, kh, kw = (int(v) for v in w_shape[:3])
    if o < 1 or o % a["group"] or not (1 <= kh <= 64 and 1 <= kw <= 64):
        raise bad(f"packed weights {list(w_shape)}: output channels a positive multiple of group, a kernel 1 to 64 wide and high")
    for what, got, want in (("alpha", alpha, o), ("beta", beta, a["channels"]), ("bias", bias, o)):
        if got != want:
            raise bad(f"{what} has {got} values, {want} expected")
    if x_shape is not None:
        if len(x_shape) != 4 or x_shape[1] != a["channels"]:
            raise bad(f"input {list(x_shape)} must be NCHW with {a['channels']} channels")
        for d, (ksz, pad, dil) in enumerate(((kh, a["pad_h"], a["dilation_h"]), (kw, a["pad_w"], a["dilation_w"]))):
            if int(x_shape[2 + d]) + 2 * pad - dil * (ksz - 1) - 1 < 0:
                raise bad(f"a {kh}x{kw} kernel (dilation {dil}) does not fit the input {list(x_shape)} padded by {pad}")


def check_model(model: Any) -> None:
    """``check`` for every BinaryConv node of an ONNX model (weights, alpha, beta, bias from its initializers)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    declared = {v.name: v for v in [*model.graph.input, *model.graph.value_info]}
    for node in model.graph.node:
        if node.domain != DOMAIN or node.op_type != OP:
            continue
        if len(node.input) != 5 or any(i not in inits for i in node.input[1:]):
            raise InputError(f"edgesmith.BinaryConv node {node.name or node.output[0]}: W, alpha, beta and bias must be constants", hint="rebuild the model")
        w, alpha, beta, bias = (numpy_helper.to_array(inits[i]) for i in node.input[1:])
        name = node.name or node.output[0]
        _NAMES[_weights_key(w)] = name  # the op body (which is not told its node) names it in its errors
        dims = declared[node.input[0]].type.tensor_type.shape.dim if node.input[0] in declared else []
        x_shape = tuple(d.dim_value for d in dims) if dims and all(d.HasField("dim_value") for d in dims) else None
        check(_attrs(node), tuple(w.shape), int(alpha.size), int(beta.size), int(bias.size), x_shape, name=name)


def lower(model: Any) -> Any:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    nodes, new_inits = [], []
    for node in model.graph.node:
        if node.domain != DOMAIN or node.op_type != OP:
            nodes.append(node)
            continue
        a = _attrs(node)
        check_model(_one_node(model, node))
        x, wname, aname, bname, biasname = node.input
        base = node.name or node.output[0]
        bits = numpy_helper.to_array(inits[wname]).astype(np.uint8)
        alpha = numpy_helper.to_array(inits[aname]).astype(np.float32)
        beta = numpy_helper.to_array(inits[bname]).astype(np.float32)
        w = unpack_weights(bits, a["channels"] // a["group"]) * alpha.reshape(-1, 1, 1, 1)
        new_inits += [
            numpy_helper.from_array(w.astype(np.float32), f"{base}__w"),
            numpy_helper.from_array(beta.reshape(1, -1, 1, 1), f"{base}__beta"),
            helper.make_tensor(f"{base}__one", TensorProto.FLOAT, [], [1.0]),
            helper.make_tensor(f"{base}__minus", TensorProto.FLOAT, [], [-1.0]),
        ]
        nodes += [
            helper.make_node("GreaterOrEqual", [x, f"{base}__beta"], [f"{base}__ge"], name=f"{base}__ge"),
            helper.make_node("Where", [f"{base}__ge", f"{base}__one", f"{base}__minus"], [f"{base}__sign"], name=f"{base}__sign"),
            helper.make_node(
                "Conv",
                [f"{base}__sign", f"{base}__w", biasname],
                list(node.output),
                name=f"{base}__conv",
                group=a["group"],
                strides=[a["stride_h"], a["stride_w"]],
                dilations=[a["dilation_h"], a["dilation_w"]],
                pads=[a["pad_h"], a["pad_w"], a["pad_h"], a["pad_w"]],
            ),
        ]
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(new_inits)
    used = {i for n in out.graph.node for i in n.input}
    keep_inits = [i for i in out.graph.initializer if i.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(keep_inits)
    if not any(n.domain == DOMAIN for n in out.graph.node):
        keep = [o for o in out.opset_import if o.domain != DOMAIN]
        del out.opset_import[:]
        out.opset_import.extend(keep)
    return out


_NAMES: dict[tuple, str] = {}  # packed weights -> node name (check_model fills it when a model is loaded)


def _weights_key(w: np.ndarray) -> tuple:
    return (hashlib.blake2b(np.ascontiguousarray(w).tobytes(), digest_size=16).digest(), tuple(w.shape))


def _one_node(model: Any, node: Any) -> Any:
    """A view of ``model`` with ``node`` as its only node (``check_model`` of one node)."""
    import onnx

    view = onnx.ModelProto()
    view.graph.initializer.extend(i for i in model.graph.initializer if i.name in node.input)
    view.graph.node.append(node)
    return view


_PREPARED: OrderedDict[tuple, Any] = OrderedDict()
_MAX_PREPARED = 256  # layers kept prepared (least recently used dropped)
_ORT_DEFINED: list[bool] = []


def _layer(w: np.ndarray, a: dict[str, int]) -> Any:
    """The prepared kernel layer for these weight bits, cached by content (ORT hands the op a fresh array per call)."""

    key = (hashlib.blake2b(w.tobytes(), digest_size=16).digest(), w.shape, tuple(a.values()))
    layer = _PREPARED.get(key)
    if layer is None:
        layer = BinaryConv2d.from_packed(
            w,
            a["channels"] // a["group"],
            a["group"],
            (a["stride_h"], a["stride_w"]),
            (a["pad_h"], a["pad_w"]),
            (a["dilation_h"], a["dilation_w"]),
            threads=_threads(),
        )
        _PREPARED[key] = layer
        if len(_PREPARED) > _MAX_PREPARED:
            _PREPARED.popitem(last=False)
    else:
        _PREPARED.move_to_end(key)
    return layer


def _threads() -> int:
    """Kernel threads inside ONNX Runtime: 1 by default. ORT's own intra-op threads spin between ops; OpenMP
    threads of ours beside them oversubscribed the 2 cores (the digits CNN at batch 32 took 8.2 ms with 2
    kernel threads). ``EDGESMITH_BNN_THREADS`` overrides."""

    return bnn_threads()


def define_onnxruntime() -> None:
    """Define the op for onnxruntime-extensions (once per process); ``runtime/ops/domain.py`` registers the library."""

    ext = ortx.load()
    if not _ORT_DEFINED:
        d = ext.PyCustomOpDef

        @ext.onnx_op(
            op_type=f"{DOMAIN}::{OP}",
            inputs=[d.dt_float, d.dt_uint8, d.dt_float, d.dt_float, d.dt_float],
            outputs=[d.dt_float],
            attrs={k: d.dt_int64 for k in INT_ATTRS},
        )
        @ortx.guarded
        def _binary_conv(x: Any, w: Any, alpha: Any, beta: Any, bias: Any, **attrs: Any) -> Any:
            a = attr_values(attrs.get)
            name = _NAMES.get(_weights_key(np.asarray(w)), "")
            check(a, tuple(np.shape(w)), int(np.size(alpha)), int(np.size(beta)), int(np.size(bias)), tuple(np.shape(x)), name=name)
            layer = _layer(words(w), a)
            shifted = np.asarray(x, dtype=np.float32) - np.asarray(beta, dtype=np.float32).reshape(1, -1, 1, 1)
            y = layer(shifted).astype(np.float32)
            return y * np.asarray(alpha, np.float32).reshape(1, -1, 1, 1) + np.asarray(bias, np.float32).reshape(1, -1, 1, 1)

        _ORT_DEFINED.append(True)


def openvino_extension() -> Any:
    """OpenVINO: the compiled extension (``runtime/kernels/ov_extension.py``: a custom op whose evaluate runs the
    XNOR-popcount kernel), built on first use; where it cannot be built, a conversion of the node into
    OpenVINO's float ops (the lowering), which runs anywhere."""

    bnn_threads()  # the extension reads EDGESMITH_BNN_THREADS in C++: a bad value is refused here, by name
    try:
        return library_path()
    except BackendUnavailable:
        return float_conversion()


def float_conversion() -> Any:
    from openvino.frontend.onnx import ConversionExtension

    def convert(node: Any) -> list:
        import openvino.opset13 as ops

        a = attr_values(node.get_attribute)
        x, w_in, alpha_in, beta_in, bias_in = (node.get_input(i) for i in range(5))
        consts = [i.get_node().get_data() if hasattr(i.get_node(), "get_data") else None for i in (w_in, alpha_in, beta_in, bias_in)]
        if any(c is None for c in consts):
            raise InputError("edgesmith.BinaryConv needs constant packed weights, alpha, beta and bias", hint="rebuild the model")
        bits, c_alpha, c_beta, c_bias = (np.asarray(c) for c in consts)
        check(a, tuple(bits.shape), int(c_alpha.size), int(c_beta.size), int(c_bias.size), name=node.get_name() if hasattr(node, "get_name") else "")
        alpha = alpha_in.get_node().get_data().astype(np.float32)
        w = unpack_weights(np.asarray(bits, dtype=np.uint8), a["channels"] // a["group"]) * alpha.reshape(-1, 1, 1, 1)
        beta = ops.reshape(beta_in, ops.constant(np.array([1, -1, 1, 1], dtype=np.int64)), False)
        sign = ops.select(ops.greater_equal(x, beta), ops.constant(np.float32(1.0)), ops.constant(np.float32(-1.0)))
        strides, dil = [a["stride_h"], a["stride_w"]], [a["dilation_h"], a["dilation_w"]]
        pads = [a["pad_h"], a["pad_w"]]
        if a["group"] == 1:
            y = ops.convolution(sign, ops.constant(w), strides, pads, pads, dil)
        else:
            g = a["group"]
            y = ops.group_convolution(sign, ops.constant(w.reshape(g, w.shape[0] // g, *w.shape[1:])), strides, pads, pads, dil)
        bias = ops.reshape(bias_in, ops.constant(np.array([1, -1, 1, 1], dtype=np.int64)), False)
        return [ops.add(y, bias).output(0)]

    return ConversionExtension(OP, DOMAIN, convert)
