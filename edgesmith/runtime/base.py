"""The backend protocol: available / compile / load, and a Session that runs feeds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgesmith.outputs import sha256


@dataclass
class Artifact:
    """A compiled, target-specific model file plus what is needed to load it again."""

    path: Path
    backend: str
    options: dict[str, Any] = field(default_factory=dict)


def same_file(a: Path, b: Path) -> bool:
    """Byte-identical files (one path, or equal size and SHA-256)."""

    a, b = Path(a), Path(b)
    try:
        if a.resolve() == b.resolve():
            return True
        return a.stat().st_size == b.stat().st_size and sha256(a) == sha256(b)
    except OSError:
        return False


def same_model(a: Artifact, b: Artifact) -> bool:
    """True when ``a`` and ``b`` are one model on one runtime with one set of options (one file, or
    byte-identical ones; an OpenVINO IR's weights too). Its speed-up over itself is exactly 1: timing the
    pair measures only noise (a trial that leaves the float model unchanged, a run with no passes), and a
    ``speedup >= 1`` budget would be decided by that noise."""
    if a.backend != b.backend or a.options != b.options:
        return False
    pa, pb = Path(a.path), Path(b.path)
    parts = [(pa, pb)] + ([(pa.with_suffix(".bin"), pb.with_suffix(".bin"))] if pa.suffix == ".xml" else [])
    return all(same_file(x, y) or (not x.exists() and not y.exists()) for x, y in parts)


class Session(Protocol):
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def bind(self, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
        """Set inputs once; the returned call runs inference only (what a benchmark times). If it
        returns a float, that is the runtime's own latency measurement in seconds."""
        ...


class Backend(Protocol):
    name: str
    artifact_suffix: str  # file type of compiled artifacts (.onnx, .xml, .engine)

    def available(self) -> bool: ...

    def input_specs(self, path: Path) -> list[dict]: ...

    def default_options(self) -> dict[str, Any]: ...

    def compile(self, onnx_path: Path, out_path: Path, profile: Any, input_specs: Any = (), calibration: Any = None) -> Artifact:
        """Build the target's artifact; ``input_specs`` and ``calibration`` serve backends that need them
        (TensorRT's shape profiles and INT8 calibrator)."""
        ...

    def load(self, artifact: Artifact, threads: int) -> Session: ...

    def benchmark(self, artifact: Artifact, feeds: dict[str, np.ndarray], threads: int, warmup: int, iterations: int, duration_s: float | None) -> Any: ...


class MeasuredInChild:
    """The ``benchmark`` every backend shares: a fresh child process per measurement (runtime.bench)."""

    def benchmark(
        self, artifact: Artifact, feeds: dict[str, np.ndarray], threads: int, warmup: int = 10, iterations: int = 100, duration_s: float | None = None
    ) -> Any:
        from edgesmith.runtime.bench import benchmark

        return benchmark(artifact, feeds, threads, warmup, iterations, duration_s)
