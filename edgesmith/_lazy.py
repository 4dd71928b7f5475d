"""Heavy dependencies load through one helper that turns ImportError into a hint."""

from __future__ import annotations

import contextlib
import importlib
import os
from types import ModuleType

from edgesmith.errors import BackendUnavailable

# package import name -> the pip extra (or requirement) that provides it
_EXTRAS = {
    "torch": "pip install -c constraints.txt 'edgesmith[build]'  (building from PyTorch models)",
    "onnx": "pip install edgesmith  (core dependency)",
    "onnxruntime": "pip install 'edgesmith[ort]'",
    "onnxscript": "pip install 'edgesmith[build]'  (the torch.export ONNX exporter needs it)",
    "safetensors": "pip install 'edgesmith[build]'",
    "sklearn": "pip install 'edgesmith[build]'  (scikit-learn provides the built-in digits data)",
    "torch_pruning": "pip install -c constraints.txt 'edgesmith[build]'  (Torch-Pruning: prune_channels)",
    "openvino": "pip install 'edgesmith[openvino]'",
    "nncf": "pip install 'edgesmith[openvino]'",
    "neural_compressor": "pip install 'edgesmith[inc]'",
    "tensorrt": "pip install 'edgesmith[tensorrt]' (TensorRT wheels come from NVIDIA's index)",
    "optuna": "pip install -c constraints.txt 'edgesmith[search]'  (edgesmith search: Optuna samplers and study)",
    "ray": "pip install -c constraints.txt 'edgesmith[ray]'  (edgesmith search --ray: trials on a Ray cluster)",
    "transformers": "pip install -c constraints.txt 'edgesmith[hf]'  (Transformers folders and tokenizers)",
    "PIL": "pip install 'edgesmith[data]'  (Pillow: image folders)",
    "pyarrow": "pip install 'edgesmith[data]'  (parquet, arrow and saved datasets folders)",
    "mlflow": "pip install -c constraints.txt 'edgesmith[mlflow]'  (MLflow logging is optional)",
}

# libraries that make ONNX Runtime sessions of their own (NNCF's statistics, INC's calibration)
_RUN_ORT = ("onnxruntime", "nncf", "neural_compressor")


def require(module: str) -> ModuleType:
    """Import ``module`` or raise BackendUnavailable naming the extra to install."""
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        hint = _EXTRAS.get(top, f"pip install {top}")
        raise BackendUnavailable(f"{top} is not installed or failed to import ({exc})", hint=hint) from exc
    if module.split(".")[0] in _RUN_ORT:
        quiet_onnxruntime()
    return imported


def quiet_onnxruntime() -> None:
    """Once per run (the pipeline) and whenever a library that runs ORT loads (``require``), unless EDGESMITH_DEBUG:
    ORT's default logger prints every node failure, in colour, from sessions libraries make (NNCF's
    statistics, ORT's calibrator); the same failure reaches the user once, as edgesmith's one line."""
    if os.environ.get("EDGESMITH_DEBUG"):
        return
    with contextlib.suppress(ImportError):  # NOTE: NNCF for OpenVINO alone runs without ONNX Runtime
        importlib.import_module("onnxruntime").set_default_logger_severity(4)
