"""The backend protocol: available / compile / load, and a Session that runs feeds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np


@dataclass
class Artifact:
    """A compiled, target-specific model file plus what is needed to load it again."""

    path: Path
    backend: str
    options: dict[str, Any] = field(default_factory=dict)


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
