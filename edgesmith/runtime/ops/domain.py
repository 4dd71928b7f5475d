"""The ``edgesmith`` custom-op domain as one route: ``BinarySign`` (binary_sign.py) and ``BinaryConv``
(binary_conv.py) — lowered together, registered together (one onnxruntime-extensions library on the
session options, one conversion extension per op on an OpenVINO Core)."""

from __future__ import annotations

from typing import Any

from edgesmith.runtime.custom_ops import CustomOpRoute
from edgesmith.runtime.ops import binary_conv, binary_sign, ortx

DOMAIN = "edgesmith"
OPS = (binary_sign, binary_conv)


def lower(model: Any) -> Any:
    for op in OPS:
        model = op.lower(model)
    return model


def register_onnxruntime(session_options: Any) -> None:

    for op in OPS:
        op.define_onnxruntime()
    session_options.register_custom_ops_library(ortx.load().get_library_path())


def register_openvino(core: Any) -> None:
    for op in OPS:
        core.add_extension(op.openvino_extension())


ROUTE = CustomOpRoute(
    name=DOMAIN,
    ops=tuple(op.OP for op in OPS),
    lower=lower,
    register={"onnxruntime": register_onnxruntime, "openvino": register_openvino},
    check=binary_conv.check_model,
    summary="binary networks: BinarySign (alpha * sign(x), sign(0) = +1) and BinaryConv "
    "(bit-packed weights, run by the compiled XNOR-popcount kernel on ONNX Runtime)",
)
