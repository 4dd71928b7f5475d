"""``pack_binary``: store binary convolutions bit-packed and run them on the compiled XNOR-popcount kernel.

``binarize`` exports its layers in the standard-op lowering: GreaterOrEqual(X, β) → Where(1, −1) → Conv
whose weights are ±α per output channel (batch norm folded in by the exporter only rescales α); a binary
Linear exports as the same sign feeding Gemm (or MatMul) on a 2-D input. This pass finds those patterns and
replaces each by one ``edgesmith.BinaryConv`` node (a Linear: a 1x1 one between Unsqueeze and Flatten) carrying the weights as sign bits
(uint8 bytes of 64-bit words, 1 bit per weight) plus α, β and the bias — the artifact's binary layers shrink ~32x and ONNX
Runtime runs them on the kernel (``runtime/ops/binary_conv.py``). A Conv whose weights are not ±α per
channel, or whose input is not such a sign, is left alone; ``lower_custom_ops`` turns the result back
into the standard ops for runtimes without the route.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.compress.registry import PassInfo
from edgesmith.errors import BackendUnavailable
from edgesmith.runtime.kernels.binary import impl_used, pack_nchw
from edgesmith.runtime.ops import binary_conv


@dataclass(frozen=True)
class PackBinaryConfig:
    rtol: float = 1e-5  # how equal the weight magnitudes of one output channel must be to count as ±α


def _const(name: str, inits: dict, producers: dict) -> Any:
    from onnx import numpy_helper

    if name in inits:
        return numpy_helper.to_array(inits[name])
    node = producers.get(name)
    if node is not None and node.op_type == "Constant":
        return numpy_helper.to_array(next(a.t for a in node.attribute if a.name == "value"))
    if node is not None and node.op_type == "Expand":  # ones_like: a constant expanded to the input's shape
        v = _const(node.input[0], inits, producers)
        return None if v is None or np.size(v) != 1 else v.reshape(())
    if node is not None and node.op_type == "Neg":
        v = _const(node.input[0], inits, producers)
        return None if v is None else -v
    return None


def _sign_input(conv: Any, inits: dict, producers: dict) -> tuple[str, Any] | None:
    """(X, β) when the conv's input is Where(GreaterOrEqual(X, β), 1, −1) with a constant β, else None."""

    where = producers.get(conv.input[0])
    if where is None or where.op_type != "Where":
        return None
    ge = producers.get(where.input[0])
    one, minus = _const(where.input[1], inits, producers), _const(where.input[2], inits, producers)
    if ge is None or ge.op_type != "GreaterOrEqual" or one is None or minus is None or np.size(one) != 1 or np.size(minus) != 1:
        return None
    if float(one) != 1.0 or float(minus) != -1.0:
        return None
    beta = _const(ge.input[1], inits, producers)
    return (ge.input[0], beta) if beta is not None else None


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    a = next((a for a in node.attribute if a.name == name), None)
    return helper.get_attribute_value(a) if a is not None else default


def pack(model: Any, rtol: float = 1e-5) -> tuple[Any, list[str]]:
    import onnx
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    ranks = _ranks(model)
    replaced, new_nodes, new_inits = [], [], []
    for node in model.graph.node:
        if node.op_type in ("Gemm", "MatMul"):
            linear = _linear(node, inits, producers, ranks)
            if linear is None:
                new_nodes.append(node)
            else:
                x, beta, w, bias = linear
                nodes, extra = _pack_linear(node, x, beta, w, bias, rtol)
                new_nodes += nodes
                new_inits += extra
                if extra:
                    replaced.append(node.name or node.output[0])
            continue
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            new_nodes.append(node)
            continue
        found = _sign_input(node, inits, producers)
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        if found is None or w.ndim != 4:
            new_nodes.append(node)
            continue
        mag = np.abs(w).reshape(w.shape[0], -1)
        alpha = mag.mean(1)
        pads = list(_attr(node, "pads", [0, 0, 0, 0]))
        if (alpha <= 0).any() or not np.allclose(mag, alpha[:, None], rtol=rtol, atol=0) or pads[:2] != pads[2:]:
            new_nodes.append(node)
            continue
        x, beta = found
        group = int(_attr(node, "group", 1))
        channels = w.shape[1] * group
        beta = np.broadcast_to(np.asarray(beta, np.float32).reshape(-1), (channels,)).copy() if np.size(beta) in (1, channels) else None
        if beta is None:
            new_nodes.append(node)
            continue
        og = w.shape[0] // group
        bits = np.concatenate([pack_nchw(np.where(w[g * og : (g + 1) * og] >= 0, 1.0, -1.0).astype(np.float32)) for g in range(group)])
        bias = (
            numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
            if len(node.input) > 2 and node.input[2] in inits
            else np.zeros(w.shape[0], np.float32)
        )
        base = node.name or node.output[0]
        names = [f"{base}__bits", f"{base}__alpha", f"{base}__beta", f"{base}__bias"]
        # NOTE: stored as bytes: OpenVINO's CPU plugin turns u64 (and i64) constants into i32, which would cut the bit words
        new_inits += [
            numpy_helper.from_array(np.ascontiguousarray(bits).astype("<u8").view(np.uint8).reshape(*bits.shape[:3], -1), names[0]),
            numpy_helper.from_array(alpha.astype(np.float32), names[1]),
            numpy_helper.from_array(beta, names[2]),
            numpy_helper.from_array(bias, names[3]),
        ]
        strides, dil = list(_attr(node, "strides", [1, 1])), list(_attr(node, "dilations", [1, 1]))
        new_nodes.append(
            helper.make_node(
                binary_conv.OP,
                [x] + names,
                list(node.output),
                name=f"{base}__binary",
                domain=binary_conv.DOMAIN,
                channels=channels,
                group=group,
                stride_h=strides[0],
                stride_w=strides[1],
                pad_h=pads[0],
                pad_w=pads[1],
                dilation_h=dil[0],
                dilation_w=dil[1],
            )
        )
        replaced.append(node.name or node.output[0])
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(_live(new_nodes, [o.name for o in model.graph.output]))
    out.graph.initializer.extend(new_inits)
    used = {i for n in out.graph.node for i in n.input}
    keep = [i for i in out.graph.initializer if i.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(keep)
    if replaced and not any(o.domain == binary_conv.DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(binary_conv.DOMAIN, 1))
    return out, replaced


def _ranks(model: Any) -> dict[str, int]:
    """Tensor ranks from ONNX shape inference (a Linear is packed only on a 2-D input: its sign is per column)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - no ranks: no Linear is packed, convolutions still are
        return {}
    out = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = v.type.tensor_type
        if t.HasField("shape"):
            out[v.name] = len(t.shape.dim)
    return out


def _linear(node: Any, inits: dict, producers: dict, ranks: dict) -> tuple | None:
    """(X, β, W [O, C], bias or None) when a Gemm/MatMul computes sign(X − β) · Wᵀ (+ b) with ±α rows on a 2-D X."""
    from onnx import numpy_helper

    if len(node.input) < 2 or node.input[1] not in inits:
        return None
    found = _sign_input(node, inits, producers)
    if found is None or ranks.get(node.input[0]) != 2:
        return None
    w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
    if w.ndim != 2:
        return None
    bias = None
    if node.op_type == "Gemm":
        if _attr(node, "transA", 0) or _attr(node, "alpha", 1.0) != 1.0 or _attr(node, "beta", 1.0) != 1.0:
            return None
        w = w if _attr(node, "transB", 0) else w.T
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in inits:
                return None
            bias = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
            if bias.size not in (1, w.shape[0]):
                return None
            bias = np.broadcast_to(bias.reshape(-1), (w.shape[0],)).copy()
    else:
        w = w.T
    return found[0], found[1], np.ascontiguousarray(w), bias


def _pack_linear(node: Any, x: str, beta: Any, w: Any, bias: Any, rtol: float) -> tuple[list, list]:
    """Unsqueeze(X, [2, 3]) → 1x1 BinaryConv → Flatten(1): the Linear on the same kernel, its weights as bits."""
    from onnx import helper, numpy_helper

    mag = np.abs(w)
    alpha = mag.mean(1)
    o, c = w.shape
    beta = np.asarray(beta, np.float32).reshape(-1)
    if (alpha <= 0).any() or not np.allclose(mag, alpha[:, None], rtol=rtol, atol=0) or beta.size not in (1, c):
        return [node], []
    beta = np.broadcast_to(beta, (c,)).copy()
    bits = pack_nchw(np.where(w >= 0, 1.0, -1.0).astype(np.float32).reshape(o, c, 1, 1))
    base = node.name or node.output[0]
    names = [f"{base}__bits", f"{base}__alpha", f"{base}__beta", f"{base}__bias", f"{base}__axes"]
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(bits).astype("<u8").view(np.uint8).reshape(*bits.shape[:3], -1), names[0]),
        numpy_helper.from_array(alpha.astype(np.float32), names[1]),
        numpy_helper.from_array(beta, names[2]),
        numpy_helper.from_array(bias if bias is not None else np.zeros(o, np.float32), names[3]),
        numpy_helper.from_array(np.array([2, 3], np.int64), names[4]),
    ]
    nodes = [
        helper.make_node("Unsqueeze", [x, names[4]], [f"{base}__x4"], name=f"{base}__unsqueeze"),
        helper.make_node(
            binary_conv.OP,
            [f"{base}__x4"] + names[:4],
            [f"{base}__y4"],
            name=f"{base}__binary",
            domain=binary_conv.DOMAIN,
            channels=c,
            group=1,
            stride_h=1,
            stride_w=1,
            pad_h=0,
            pad_w=0,
            dilation_h=1,
            dilation_w=1,
        ),
        helper.make_node("Flatten", [f"{base}__y4"], list(node.output), name=f"{base}__flatten", axis=1),
    ]
    return nodes, inits


def _live(nodes: list, outputs: list[str]) -> list:
    """Nodes that feed a graph output (the sign subgraphs the fused nodes replaced fall away)."""
    needed, keep = set(outputs), []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    return list(reversed(keep))


def apply(onnx_path: Path, cfg: PackBinaryConfig, ctx: Any) -> Path:
    import onnx

    model = onnx.load(str(onnx_path))
    packed, replaced = pack(model, cfg.rtol)
    out = ctx.work_dir / "model.binary.onnx"
    onnx.save(packed, str(out))
    before, after = Path(onnx_path).stat().st_size, out.stat().st_size

    try:
        path = impl_used()
        kernel = {
            "avx512": "AVX-512 VPOPCNTDQ",
            "avx2": "AVX2 (this CPU has no AVX-512 VPOPCNTDQ: correct, slower)",
        }.get(path, "the portable popcount (this CPU has no AVX2: correct, slowest)")
    except BackendUnavailable as exc:
        kernel = f"no kernel ({exc}); ONNX Runtime cannot run the packed layers here: add lower_custom_ops"
    ctx.details["pack_binary"] = {"layers": replaced, "onnx_bytes": [before, after], "kernel": kernel}
    ctx.note(
        f"pack_binary: {len(replaced)} binary convolutions/linear layers stored bit-packed as edgesmith.BinaryConv "
        f"(ONNX {before:,} -> {after:,} bytes, {before / max(after, 1):.1f}x smaller); ONNX Runtime runs them on the compiled "
        f"XNOR-popcount kernel through onnxruntime-extensions (kernel path here: {kernel}), OpenVINO converts them to its float ops"
        if replaced
        else "pack_binary: no binary convolution found (run binarize first): the model is unchanged"
    )
    return out


PASS = PassInfo(
    "pack_binary",
    "onnx",
    PackBinaryConfig,
    apply,
    "store binarize's convolutions and linear layers bit-packed as edgesmith.BinaryConv (run on the compiled XNOR-popcount kernel)",
    runs_after=("binarize",),
    custom_ops=("edgesmith",),
)
