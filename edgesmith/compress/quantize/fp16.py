"""``fp16``: convert float32 weights and compute to float16, keeping float32 inputs and outputs.

Uses ONNX Runtime's converter (``onnxruntime.transformers.float16``), which leaves ops without
fp16 kernels in float32 behind Cast nodes. FP16 pays off on GPUs and ARM cores with fp16
arithmetic; x86 CPU profiles do not list it among their precisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgesmith.compress.registry import PassContext, PassInfo


@dataclass(frozen=True)
class FP16Config:
    keep_io_types: bool = True
    op_block_list: tuple[str, ...] = ()  # extra op types to keep in float32
    exclude_nodes: tuple[str, ...] = ()


def apply(onnx_path: Path, cfg: FP16Config, ctx: PassContext) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(onnx_path))
    converted = convert_float_to_float16(
        model,
        keep_io_types=cfg.keep_io_types,
        op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(cfg.op_block_list),
        node_block_list=list(cfg.exclude_nodes) or None,
    )
    out = ctx.work_dir / "model.fp16.onnx"
    onnx.save(converted, str(out))
    ctx.note(f"fp16: weights and compute in float16, inputs/outputs kept {'float32' if cfg.keep_io_types else 'float16'}")
    return out


PASS = PassInfo(
    name="fp16",
    stage="onnx",
    config=FP16Config,
    apply=apply,
    summary="float16 weights and compute (ORT converter), float32 I/O kept",
    precision="fp16",
    float_graph=True,
)
