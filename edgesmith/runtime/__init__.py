"""Backends behind one small protocol (``runtime.base.Backend``); one module per backend.

Adding a backend is adding a module and one line in ``_BACKENDS``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from edgesmith.errors import ConfigError
from edgesmith.runtime.base import Artifact, Backend, Session

__all__ = ["Artifact", "Backend", "Session", "backend_for_artifact", "get_backend", "known_backends"]

# backend name -> module defining BACKEND (each imports its runtime lazily)
_BACKENDS = {
    "onnxruntime": "edgesmith.runtime.onnxruntime",
    "openvino": "edgesmith.runtime.openvino",
    "tensorrt": "edgesmith.runtime.tensorrt",  # written to the documented API; never executed here (see module)
}


def known_backends() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name: str, require_installed: bool = True) -> Backend:
    """The backend object; with ``require_installed`` its runtime must be importable (else a hint)."""
    if name not in _BACKENDS:
        raise ConfigError(f"no backend named {name!r} in this version of edgesmith", hint=f"available backends: {', '.join(known_backends())}")
    backend = importlib.import_module(_BACKENDS[name]).BACKEND
    if require_installed:
        if hasattr(backend, "check_available"):
            backend.check_available()
        elif not backend.available():
            from edgesmith._lazy import require

            require(name)  # raises BackendUnavailable naming the extra to install
    return backend


def backend_for_artifact(path: str | Path) -> str:
    """Which backend runs a compiled artifact, from its file type."""
    suffix = Path(path).suffix.lower()
    for name in _BACKENDS:
        if getattr(importlib.import_module(_BACKENDS[name]).BACKEND, "artifact_suffix", None) == suffix:
            return name
    raise ConfigError(f"cannot tell which runtime runs {Path(path).name}", hint="known artifact types: .onnx (onnxruntime), .xml (openvino), .engine (tensorrt); or pass --backend")
