"""Backends behind one small protocol (``runtime.base.Backend``); one module per backend.

Adding a backend is adding a module and one line in ``_BACKENDS``.
"""

from __future__ import annotations

import importlib

from edgesmith.errors import ConfigError
from edgesmith.runtime.base import Artifact, Backend, Session

__all__ = ["Artifact", "Backend", "Session", "get_backend", "known_backends"]

# backend name -> module defining BACKEND. OpenVINO and TensorRT arrive with the runtimes issue.
_BACKENDS = {
    "onnxruntime": "edgesmith.runtime.onnxruntime",
}


def known_backends() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name: str) -> Backend:
    if name not in _BACKENDS:
        raise ConfigError(f"no backend named {name!r} in this version of edgesmith", hint=f"available backends: {', '.join(known_backends())}")
    return importlib.import_module(_BACKENDS[name]).BACKEND
