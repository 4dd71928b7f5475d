"""Backends behind one small protocol (``runtime.base.Backend``); one module per backend.

Built-in backends are listed in ``_BUILTIN``; third-party ones come from the ``edgesmith.backends``
entry-point group (``name = "pkg.module:BACKEND"``), loaded through ``edgesmith.plugins`` so a broken
plugin is reported, never fatal. Adding a backend is adding a module.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgesmith._lazy import require
from edgesmith.errors import ConfigError
from edgesmith.plugins import Loaded, load_group
from edgesmith.runtime.base import Artifact, Backend, Session

__all__ = ["Artifact", "Backend", "Session", "backend_for_artifact", "get_backend", "known_backends", "measurable_backends"]

# backend name -> module defining BACKEND (each imports its runtime lazily)
_BUILTIN = {
    "onnxruntime": "edgesmith.runtime.onnxruntime",
    "openvino": "edgesmith.runtime.openvino",
    "tensorrt": "edgesmith.runtime.tensorrt",  # written to the documented API; never executed here (see module)
}


def _accept(obj: Any) -> Any:
    ok = all(hasattr(obj, a) for a in ("name", "artifact_suffix", "compile", "load", "available"))
    return obj if ok else None


@lru_cache(maxsize=1)
def _plugins() -> Loaded:
    loaded = Loaded()
    for name in _BUILTIN:
        loaded.add(name, None, "edgesmith")  # loaded on first use: importing a backend module is not free
    load_group("edgesmith.backends", loaded, _accept, "BACKEND")
    return loaded


def known_backends() -> list[str]:
    return sorted(_plugins().objects)


def _backend(name: str) -> Any:
    reg = _plugins()
    reg.check_claim(name, "backend")
    if name not in reg.objects:
        raise ConfigError(f"no backend named {name!r} in this version of edgesmith", hint=f"available backends: {', '.join(known_backends())}")
    return importlib.import_module(_BUILTIN[name]).BACKEND if name in _BUILTIN else reg.objects[name]


def get_backend(name: str, require_installed: bool = True) -> Backend:
    """The backend object; with ``require_installed`` its runtime must be importable (else a hint)."""
    backend = _backend(name)
    if require_installed:
        if hasattr(backend, "check_available"):
            backend.check_available()
        elif not backend.available():
            require(name)  # raises BackendUnavailable naming the extra to install
    return backend


def measurable_backends() -> list[str]:
    """Backends that can run and be timed on this host's CPU (what optimize may try beside the target)."""
    return [n for n in known_backends() if getattr(_backend(n), "runs_on_host_cpu", False)]


def backend_for_artifact(path: str | Path) -> str:
    """Which backend runs a compiled artifact, from its file type."""
    suffix = Path(path).suffix.lower()
    for name in known_backends():
        if getattr(_backend(name), "artifact_suffix", None) == suffix:
            return name
    raise ConfigError(
        f"cannot tell which runtime runs {Path(path).name}",
        hint="known artifact types: .onnx (onnxruntime), .xml (openvino), .engine (tensorrt); or pass --backend",
    )
