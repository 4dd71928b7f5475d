"""ONNX Runtime CPU backend.

``compile`` runs ORT's graph optimiser at ``ORT_ENABLE_ALL`` for the target and saves the
optimised model as the artifact: for QDQ models that is where Q/DQ pairs fuse into integer
kernels (QLinearConv, QLinearMatMul/MatMulInteger), so the artifact shows what will execute.
The saved graph can contain layout ops specific to this CPU class, which is why it is per target.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith._lazy import require
from edgesmith.errors import EdgesmithError, refused_data
from edgesmith.model_io import onnx_input_specs
from edgesmith.runtime.base import Artifact, MeasuredInChild
from edgesmith.runtime.custom_ops import apply_registrations
from edgesmith.runtime.ops import ortx

LEVELS = ("disable", "basic", "extended", "all")


def _level(ort: Any, name: str):
    return {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[name]


def session_options(threads: int, level: str = "all"):
    ort = require("onnxruntime")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = _level(ort, level)
    so.log_severity_level = 3
    return so


ACTIVATION_QUANT = {"QuantizeLinear", "DynamicQuantizeLinear"}


def weights_only_quantized(path: Path) -> bool:
    """Dequantized weights and no quantized activation (``int4_weights``): nothing for ORT's QDQ fusions."""
    import onnx

    ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    return "DequantizeLinear" in ops and not ops & ACTIVATION_QUANT


class OrtSession:
    def __init__(self, path: Path, threads: int, level: str, fold_weights: bool = False):
        ort = require("onnxruntime")
        so = session_options(threads, level)
        if fold_weights:
            # NOTE: with its QDQ handling on, ORT keeps every DequantizeLinear for fusion and dequantizes 4-bit
            # weights on each run (EasyOCR's recognizer 2.5x slower than float); off, they fold once at load
            so.add_session_config_entry("session.disable_quant_qdq", "1")
        apply_registrations("onnxruntime", so, path)
        self._sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self._sess.get_inputs()]
        self.output_names = [o.name for o in self._sess.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            out = self._sess.run(None, feeds)
        except Exception as exc:
            ortx.raise_pending()  # an edgesmith op's own error, kept by its body (runtime/ops/ortx.py), comes first
            refused = refused_data(exc)
            if refused is not None:
                raise refused from exc
            raise
        ortx.raise_pending()
        return out

    def bind(self, feeds: dict[str, np.ndarray]):
        """Inputs and outputs bound once (IOBinding); the returned call times inference alone."""
        binding = self._sess.io_binding()
        self._bound = {name: np.ascontiguousarray(feeds[name]) for name in self.input_names}  # keep alive
        for name, arr in self._bound.items():
            binding.bind_cpu_input(name, arr)
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        run = self._sess.run_with_iobinding
        return lambda: run(binding)


class OnnxRuntimeBackend(MeasuredInChild):
    name = "onnxruntime"
    artifact_suffix = ".onnx"
    runs_on_host_cpu = True

    def available(self) -> bool:
        return importlib.util.find_spec("onnxruntime") is not None

    def compile(self, onnx_path: Path, out_path: Path, profile: Any, input_specs: Any = (), calibration: Any = None, level: str | None = None) -> Artifact:
        ort = require("onnxruntime")
        level = level or (profile.graph_optimization if profile is not None else "all")
        so = session_options(profile.threads if profile else 1, level)
        so.optimized_model_filepath = str(out_path)
        apply_registrations(self.name, so, onnx_path)
        try:
            ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else type(exc).__name__
            raise EdgesmithError(
                f"ONNX Runtime cannot compile {Path(onnx_path).name}: {first}",
                hint="an op may lack a CPU kernel for this precision; check the pass and the profile's precisions",
            ) from exc
        options = {"optimization": level, "onnxruntime": ort.__version__, "provider": "CPUExecutionProvider"}
        options["fold_weights"] = weights_only_quantized(out_path)  # stored small, folded to float when a session loads it
        return Artifact(out_path, self.name, options)

    def input_specs(self, path: Path) -> list[dict]:

        return onnx_input_specs(path)

    def default_options(self) -> dict[str, Any]:
        return {"load_level": "all"}

    def load(self, artifact: Artifact, threads: int) -> OrtSession:
        # NOTE: the artifact is already optimised, but some of ORT's optimisations are applied at session
        # start only and not saved: loading it with optimisations off ran ResNet-18 INT8 3% slower here.
        level = artifact.options.get("load_level") or "all"
        fold = artifact.options.get("fold_weights")  # set by compile; a file benchmarked as it is is looked at here
        return OrtSession(artifact.path, threads, level, weights_only_quantized(artifact.path) if fold is None else bool(fold))


BACKEND = OnnxRuntimeBackend()
