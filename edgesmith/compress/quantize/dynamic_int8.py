"""``dynamic_int8``: int8 weights, activations quantized at run time (ONNX Runtime's quantize_dynamic).

Per-channel weights are on by default: on a transformer encoder it moved output cosine against
FP32 from 0.964 (per-tensor) to 0.993 here. ORT quantizes MatMul/Conv/Gather/Attention/LSTM this
way; Gemm (how torch exports ``nn.Linear`` with a bias) has no dynamic kernel and stays float,
which the report lists.

Recipe::

    passes:
      - type: dynamic_int8
        op_types: [MatMul]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgesmith.compress.quantize.onnx_common import float_compute_nodes, note_float_nodes, preprocess
from edgesmith.compress.registry import PassContext, PassInfo


@dataclass(frozen=True)
class DynamicInt8Config:
    op_types: tuple[str, ...] = ("MatMul", "Conv", "Gather", "Attention", "LSTM")
    per_channel: bool = True
    weight_type: Literal["int8", "uint8"] = "int8"
    reduce_range: bool | None = None  # None: from the target profile
    exclude_nodes: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.op_types:
            raise ValueError("op_types must name at least one op type")


def apply(onnx_path: Path, cfg: DynamicInt8Config, ctx: PassContext) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    unsupported = [op for op in cfg.op_types if op not in IntegerOpsRegistry]
    if unsupported:
        ctx.note(f"dynamic_int8: ORT has no dynamic kernel for {', '.join(unsupported)}; those ops stay float")
    reduce_range = cfg.reduce_range if cfg.reduce_range is not None else (ctx.profile.quantization.reduce_range if ctx.profile else False)
    pre = preprocess(onnx_path, ctx.work_dir / "dynamic_int8.pre.onnx", ctx)
    out = ctx.work_dir / "model.dynint8.onnx"
    quantize_dynamic(
        str(pre),
        str(out),
        op_types_to_quantize=[op for op in cfg.op_types if op in IntegerOpsRegistry],
        per_channel=cfg.per_channel,
        reduce_range=reduce_range,
        weight_type=QuantType.QInt8 if cfg.weight_type == "int8" else QuantType.QUInt8,
        nodes_to_exclude=list(cfg.exclude_nodes),
    )
    import onnx

    integer_ops = {n.op_type for n in onnx.load(str(out), load_external_data=False).graph.node} & {
        "MatMulInteger",
        "ConvInteger",
        "DynamicQuantizeMatMul",
        "DynamicQuantizeLinear",
    }
    left = [n for n in float_compute_nodes(out, "DynamicQuantizeLinear") if not n.endswith("(MatMulInteger)")]
    ctx.note(
        f"dynamic_int8: weights {cfg.weight_type}{' per-channel' if cfg.per_channel else ' per-tensor'}; integer ops: {', '.join(sorted(integer_ops)) or 'none'}"
    )
    note_float_nodes(ctx, "dynamic_int8", left)
    ctx.details["dynamic_int8"] = {"per_channel": cfg.per_channel, "weight_type": cfg.weight_type, "float_nodes": left}
    return out


PASS = PassInfo(
    name="dynamic_int8",
    stage="onnx",
    config=DynamicInt8Config,
    apply=apply,
    summary="dynamic INT8 (int8 weights, run-time activation quantization), per-channel by default",
    precision="int8",
    float_graph=True,
)
