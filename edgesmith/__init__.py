"""edgesmith: trained PyTorch models -> compressed ONNX -> per-target runtimes, validated.

Importing this package is cheap: torch, onnxruntime and openvino load only inside the
modules that need them (see ``edgesmith._lazy``). The Python API (``edgesmith.run``,
``edgesmith.quantize``, ``edgesmith.optimize``) loads on first use.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["optimize", "quantize", "run"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from edgesmith import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgesmith' has no attribute {name!r}")
