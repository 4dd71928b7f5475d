"""The one evaluator: every command that judges an artifact's accuracy goes through it.

It holds the evaluation data (loaded once by the caller), runs any backend's session over it,
computes the float reference outputs once per (float model, runtime, data) — cached on disk by
content hash, so a search or a second run reuses them — and turns outputs into the task metric,
fidelity (cosine, SQNR: worst output) and per-sample answers for the CI gate.

Used by the pipeline (``run`` and every command built on it), ``tune``, ``optimize`` and the
device-side ``validate RUN_DIR``; they get identical numbers for the same artifact and data.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.data.run_data import content_digest
from edgesmith.environment import library_versions
from edgesmith.errors import InputError
from edgesmith.metrics import correct_bits, fidelity, top1
from edgesmith.model_io import import_object
from edgesmith.outputs import atomic_write_bytes, sha256

CACHE_VERSION = 1


def run_dataset(session: Any, dataset: Any) -> list[np.ndarray]:
    """All outputs of ``session`` over ``dataset``, concatenated per output."""
    per_output: list[list[np.ndarray]] = []
    for batch in dataset.batches:
        outs = session.run({n: batch.inputs[n] for n in session.input_names})
        if not per_output:
            per_output = [[] for _ in outs]
        for i, o in enumerate(outs):
            per_output[i].append(np.asarray(o))
    return [np.concatenate(chunks) for chunks in per_output]


def task_metrics(outputs: list[np.ndarray], labels: np.ndarray | None, metric: str, user_fn: Callable | None = None) -> dict[str, float]:
    if metric == "top1":
        if labels is None:
            raise InputError("metric top1 needs labels in the evaluation data", hint="add labels (npz key `labels`) or use `metric: fidelity`")
        return {"top1": top1(outputs[0], labels)}
    if metric == "fidelity":
        return {}
    if user_fn is None:
        raise ValueError(f"metric {metric!r} needs its function")
    try:
        value = user_fn(outputs if len(outputs) > 1 else outputs[0], labels)
        values = {str(k): float(v) for k, v in value.items()} if isinstance(value, dict) else {metric.rpartition(":")[2]: float(value)}
    except (KeyboardInterrupt, InputError):
        raise
    except Exception as exc:  # NOTE: the user's metric failed or returned a non-number: bad input, not an edgesmith defect
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise InputError(
            f"metric function {metric} failed: {type(exc).__name__}: {first}",
            hint="it gets the outputs (an array, or a list for several outputs) and the labels, and returns a number or {name: number}",
        ) from exc
    bad = [k for k, v in values.items() if v != v or v in (float("inf"), float("-inf"))]
    if bad:
        raise InputError(f"metric function {metric} returned a non-finite {bad[0]}", hint="a metric must be a finite number")
    return values


def cache_dir() -> Path:
    """Where reference outputs are cached: ``$EDGESMITH_CACHE_DIR`` or ``~/.cache/edgesmith``."""
    root = os.environ.get("EDGESMITH_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgesmith")
    return Path(root) / "reference-outputs"


@dataclass
class Reference:
    """The float model's outputs on one runtime and the metrics they score."""

    outputs: list[np.ndarray]
    metrics: dict[str, float]
    cached: bool = False


@dataclass
class Evaluation:
    metrics: dict[str, float]
    reference: dict[str, float]
    samples: dict[str, Any] = field(default_factory=dict)
    outputs: list[np.ndarray] = field(default_factory=list)


class Evaluator:
    """Scores sessions on one evaluation set against a float reference.

    Example::

        ev = Evaluator(dataset, metric="top1")
        ref = ev.reference(backend, fp32_artifact, threads=2)
        result = ev.evaluate(backend, int8_artifact, threads=2, reference=ref)
        result.metrics  # {"top1": 98.9, "cosine": 0.9993, "sqnr_db": 27.1}
    """

    def __init__(self, evaluation: Any, metric: str = "top1", user_fn: Callable | None = None, *, use_cache: bool = True):
        self.evaluation = evaluation
        self.labels = evaluation.labels()
        if metric == "auto":  # top-1 when the data has labels, else fidelity against the float model
            metric = "top1" if self.labels is not None else "fidelity"
        self.metric = metric
        if metric not in ("top1", "fidelity") and user_fn is None:
            user_fn = import_object(metric, "metric function")
        self.user_fn = user_fn
        self.use_cache = use_cache
        self._data_digest: str | None = None

    # ---- reference -------------------------------------------------------------------------
    def reference(self, backend: Any, artifact: Any, threads: int) -> Reference:
        """The float artifact's outputs (from the disk cache when this model, runtime and data were seen)."""
        path = cache_dir() / f"{self._reference_key(artifact, threads)}.npz" if self.use_cache else None
        outputs = _read_cached(path) if path is not None else None
        cached = outputs is not None
        if outputs is None:
            outputs = self.outputs(backend, artifact, threads)
            if path is not None:
                _write_cached(path, outputs)
        return Reference(outputs, self.reference_metrics(outputs), cached)

    def reference_metrics(self, outputs: list[np.ndarray]) -> dict[str, float]:
        return {
            **task_metrics(outputs, self.labels, self.metric, self.user_fn),
            "cosine": 1.0,
            "sqnr_db": float("inf"),
            "output_fidelity": 1.0,
            "decision_agreement": 1.0,
        }

    # ---- candidates ------------------------------------------------------------------------
    def outputs(self, backend: Any, artifact: Any, threads: int) -> list[np.ndarray]:
        return run_dataset(backend.load(artifact, threads), self.evaluation)

    def score(self, outputs: list[np.ndarray], reference: Reference | list[np.ndarray]) -> Evaluation:
        """Metrics of ``outputs`` against the reference outputs (no runtime involved: the device
        bundle scores stored reference outputs through this too)."""
        ref = reference if isinstance(reference, Reference) else Reference(reference, self.reference_metrics(reference))
        if len(outputs) != len(ref.outputs) or any(a.shape != b.shape for a, b in zip(outputs, ref.outputs)):
            raise InputError(
                f"outputs {[list(a.shape) for a in outputs]} differ from the float model's {[list(b.shape) for b in ref.outputs]}",
                hint="the artifact must be a compressed version of the reference model",
            )
        metrics = {**task_metrics(outputs, self.labels, self.metric, self.user_fn), **fidelity(ref.outputs, outputs)}
        samples: dict[str, Any] = {}
        if self.metric == "top1" and self.labels is not None:
            samples = {
                "n": len(self.labels),
                "top1_correct": correct_bits(outputs[0], self.labels),
                "reference_top1_correct": correct_bits(ref.outputs[0], self.labels),
            }
        return Evaluation(metrics, dict(ref.metrics), samples, outputs)

    def evaluate(self, backend: Any, artifact: Any, threads: int, reference: Reference) -> Evaluation:
        return self.score(self.outputs(backend, artifact, threads), reference)

    # ---- cache keys ------------------------------------------------------------------------
    def data_digest(self) -> str:
        if self._data_digest is None:  # NOTE: inputs only: the reference's outputs do not depend on the labels
            self._data_digest = content_digest(self.evaluation, labels=False)
        return self._data_digest

    def _reference_key(self, artifact: Any, threads: int) -> str:

        h = hashlib.sha256()
        for f in sorted(Path(artifact.path).parent.glob(Path(artifact.path).stem + ".*")):
            h.update(f.suffix.encode())
            h.update(_file_digest(f).encode())
        versions = {k: v for k, v in library_versions().items() if k in ("edgesmith", "onnxruntime", "openvino", "numpy")}
        meta = {
            "v": CACHE_VERSION,
            "backend": artifact.backend,
            "options": artifact.options,
            "threads": threads,
            "data": self.data_digest(),
            "versions": versions,
        }
        h.update(json.dumps(meta, sort_keys=True, default=str).encode())
        return h.hexdigest()[:32]


def _file_digest(path: Path) -> str:

    return sha256(path)


def _read_cached(path: Path) -> list[np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return [npz[f"arr_{i}"] for i in range(len(npz.files))]
    except (OSError, ValueError, KeyError):  # a damaged cache entry is recomputed, never trusted
        return None


def _write_cached(path: Path, outputs: list[np.ndarray]) -> None:

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, *outputs)
        atomic_write_bytes(path, buf.getvalue())
    except OSError:  # NOTE: a cache that cannot be written only costs time
        pass
