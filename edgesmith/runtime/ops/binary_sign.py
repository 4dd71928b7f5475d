"""``edgesmith.BinarySign``: y = alpha · sign(x), with sign(0) = +1 (the activation binarizer of a
binary network; ONNX's own ``Sign`` maps 0 to 0, so it is not the same op).

- Lowering: ``Where(GreaterOrEqual(x, 0), alpha, -alpha)`` in standard ops.
- ONNX Runtime: a custom op of onnxruntime-extensions (its shared library is registered on the
  session options; ORT's wheel ships no C headers to build our own library against). The ``edgesmith``
  domain's route (``runtime/ops/domain.py``) holds this op and ``BinaryConv``.
- OpenVINO: a conversion extension of its ONNX frontend that maps the node to the same
  ``select(x >= 0, alpha, -alpha)`` of OpenVINO ops, so the IR needs no extension at load time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgesmith.runtime.ops import ortx

DOMAIN = "edgesmith"
OP = "BinarySign"


def make_node(x: str, y: str, alpha: float = 1.0, name: str = "") -> Any:
    import onnx

    return onnx.helper.make_node(OP, [x], [y], domain=DOMAIN, alpha=float(alpha), name=name or f"{OP}_{y}")


def _alpha(node: Any) -> float:
    return next((a.f for a in node.attribute if a.name == "alpha"), 1.0)


def lower(model: Any) -> Any:
    import onnx
    from onnx import TensorProto, helper

    nodes, inits = [], []
    for node in model.graph.node:
        if node.domain != DOMAIN or node.op_type != OP:
            nodes.append(node)
            continue
        a, x, y = _alpha(node), node.input[0], node.output[0]
        base = node.name or y
        inits += [
            helper.make_tensor(f"{base}__zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor(f"{base}__pos", TensorProto.FLOAT, [], [a]),
            helper.make_tensor(f"{base}__neg", TensorProto.FLOAT, [], [-a]),
        ]
        nodes += [
            helper.make_node("GreaterOrEqual", [x, f"{base}__zero"], [f"{base}__ge"], name=f"{base}__ge"),
            helper.make_node("Where", [f"{base}__ge", f"{base}__pos", f"{base}__neg"], [y], name=f"{base}__where"),
        ]
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(inits)
    if not any(n.domain == DOMAIN for n in out.graph.node):
        keep = [o for o in out.opset_import if o.domain != DOMAIN]
        del out.opset_import[:]
        out.opset_import.extend(keep)
    if all(o.version < 12 for o in out.opset_import if o.domain in ("", "ai.onnx")):
        raise ValueError("the lowering needs opset >= 12 (GreaterOrEqual)")
    return out


_ORT_DEFINED: list[bool] = []


def define_onnxruntime() -> None:
    """Define the op for onnxruntime-extensions (once per process); ``runtime/ops/domain.py`` registers the library."""

    ext = ortx.load()
    if not _ORT_DEFINED:

        @ext.onnx_op(
            op_type=f"{DOMAIN}::{OP}", inputs=[ext.PyCustomOpDef.dt_float], outputs=[ext.PyCustomOpDef.dt_float], attrs={"alpha": ext.PyCustomOpDef.dt_float}
        )
        @ortx.guarded
        def _binary_sign(x: Any, **attrs: Any) -> Any:
            a = np.float32(attrs.get("alpha", 1.0))
            return np.where(x >= 0, a, -a).astype(np.float32)

        _ORT_DEFINED.append(True)


def openvino_extension() -> Any:
    from openvino.frontend.onnx import ConversionExtension

    def convert(node: Any) -> list:
        import openvino.opset13 as ops

        x = node.get_input(0)
        a = float(node.get_attribute("alpha", 1.0))
        ge = ops.greater_equal(x, ops.constant(np.float32(0.0)))
        return [ops.select(ge, ops.constant(np.float32(a)), ops.constant(np.float32(-a))).output(0)]

    return ConversionExtension(OP, DOMAIN, convert)
