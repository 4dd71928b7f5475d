"""onnxruntime-extensions as the custom-op routes need it: the library and the Python-op decorator,
without its offline tokenizer converter.

The package's ``__init__`` imports ``onnxruntime_extensions.cvt``, which imports transformers and torch
(2.7 s here) and sets ``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python`` for the whole process (every
later ONNX protobuf parse in pure Python). In a benchmark child that should hold only the runtime that
made a custom-op model's ONNX Runtime peak memory 294 MB against OpenVINO's 99 MB for the same model,
and each child start 5 s. ``load()`` imports the package with ``cvt`` deferred: its one name
(``gen_processing_models``) imports the real module when called.
"""

from __future__ import annotations

import functools
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

import numpy as np

_CVT = "onnxruntime_extensions.cvt"


def _gen_processing_models(*args: Any, **kwargs: Any) -> Any:
    import importlib

    sys.modules.pop(_CVT, None)
    return importlib.import_module(_CVT).gen_processing_models(*args, **kwargs)


def load() -> types.ModuleType:
    """``import onnxruntime_extensions`` without transformers, torch or the protobuf switch (see above)."""
    from edgesmith._lazy import require

    if "onnxruntime_extensions" in sys.modules:
        return sys.modules["onnxruntime_extensions"]
    stub = types.ModuleType(_CVT)
    stub.gen_processing_models = _gen_processing_models  # type: ignore[attr-defined]
    placed = sys.modules.setdefault(_CVT, stub) is stub
    try:
        return require("onnxruntime_extensions")
    finally:
        if placed and sys.modules.get(_CVT) is stub:
            del sys.modules[_CVT]  # an explicit `import onnxruntime_extensions.cvt` later loads the real module


_PENDING = threading.local()


def guarded(body: Callable[..., Any]) -> Callable[..., Any]:
    """An op body that never lets an exception reach onnxruntime-extensions: raised inside a Python op it
    aborts the whole process (``terminate called after throwing pybind11::error_already_set``). The error is
    kept for this thread and an empty tensor returned; ``raise_pending`` (edgesmith's session, after the run)
    raises it as it was."""

    @functools.wraps(body)
    def op(*args: Any, **kwargs: Any) -> Any:
        try:
            return body(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - re-raised by raise_pending in the caller's frame
            if getattr(_PENDING, "error", None) is None:
                _PENDING.error = exc
            return np.zeros((0,), dtype=np.float32)

    return op


def raise_pending() -> None:
    """Raise the error an op body kept during the last run on this thread (and forget it)."""
    error, _PENDING.error = getattr(_PENDING, "error", None), None
    if error is not None:
        raise error
