"""edgesmith: trained PyTorch models -> compressed ONNX -> per-target runtimes, validated.

Importing this package is cheap: torch, onnxruntime and openvino load only inside the
modules that need them (see ``edgesmith._lazy``). The Python API mirrors every command
(``edgesmith.run``, ``quantize``, ``optimize``, ``export``, ``compile``, ``validate``, ``bench``,
``compare``, ``baseline_save``, ``check``, ``search``, ``tune``) and loads on first use.
"""

import sys
import types
from typing import Any

__version__ = "0.1.0"
__all__ = ["baseline_save", "bench", "check", "compare", "compile", "export", "optimize", "quantize", "run", "search", "tune", "validate"]


class _Package(types.ModuleType):
    """``edgesmith.optimize`` (and ``search``, ``export``, ``tune``) stay the API functions after their subpackages are
    imported: the import system's attribute for a submodule of the same name is not set on the package."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in __all__ and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in __all__:
        from edgesmith import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgesmith' has no attribute {name!r}")
