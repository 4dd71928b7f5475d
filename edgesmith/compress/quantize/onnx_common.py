"""Shared by the ONNX-level quantization passes: the calibration reader and what stayed float."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


class DatasetReader:
    """ONNX Runtime's one-method calibration protocol (``get_next``) over an edgesmith Dataset."""

    def __init__(self, dataset: Any, input_names: list[str], max_samples: int):
        self._batches = iter(dataset.take(max_samples).batches)
        self._names = input_names

    def get_next(self) -> dict | None:
        batch = next(self._batches, None)
        if batch is None:
            return None
        return {n: batch.inputs[n] for n in self._names}

    # onnxruntime >= 1.16 checks for these on CalibrationDataReader subclasses
    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def preprocess(src: Path, dst: Path, ctx: Any) -> Path:
    """ORT's recommended pre-processing (shape inference, BN folding) before quantization."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        return dst
    except Exception as exc:  # NOTE: pre-processing is an optimisation; quantization works without it
        ctx.note(f"ORT quantization pre-processing skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
        return src


def float_compute_nodes(path: Path, quantized_marker: str) -> list[str]:
    """Compute nodes (conv/matmul/gemm) that the quantizer left in float, as 'name (op)'.

    ``quantized_marker`` is the producer op type that shows a node was quantized:
    ``DequantizeLinear`` for QDQ models, or the integer op itself for dynamic models.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    producer = {out: node.op_type for node in model.graph.node for out in node.output}
    left = []
    for node in model.graph.node:
        if node.op_type in COMPUTE_OPS and producer.get(node.input[0]) != quantized_marker:
            left.append(f"{node.name or '?'} ({node.op_type})")
    return left


def note_float_nodes(ctx: Any, pass_name: str, left: list[str]) -> None:
    """Tell the report which compute nodes a quantization pass left in float (skip and report)."""
    if left:
        ctx.note(f"{pass_name} kept {len(left)} compute node(s) in float: {', '.join(left[:8])}{' ...' if len(left) > 8 else ''}")


def onnx_input_names(path: Path) -> list[str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]
