"""Latency benchmarking: warm-up, fixed iterations or a duration, percentiles, peak memory.

Each measurement runs in a fresh child process (``python -m edgesmith.runtime.bench_worker``)
that imports only the runtime: peak memory is then the deployment's (not torch's), and runs of
different artifacts do not share caches or thread pools.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.data.synthetic import example_inputs
from edgesmith.errors import ConfigError, EdgesmithError, InputError
from edgesmith.model_io import check_specs_against_onnx
from edgesmith.profiles import load_profile
from edgesmith.progress import Reporter
from edgesmith.schema import InputSpec, fixed_batch

SETTLE_PAUSE_S = 0.05  # long enough for an idle ONNX Runtime thread pool to stop spinning
# NOTE: untimed runs after each switch of session, for at least this long: the first runs after a switch
# pay for cold caches and sleeping threads. With 2 settle runs, a 20 us model's 10-run rounds came out
# 26 us against 18.5 us with 100-run rounds (and 18 us in a process of its own).
SETTLE_RUN_S = 0.02


@dataclass
class BenchStats:
    batch: int
    threads: int
    iterations: int
    warmup: int
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    throughput_per_s: float
    peak_rss_mb: float
    model_memory_mb: float  # peak RSS minus RSS before the model was loaded
    times_ms: list[float] | None = None  # every timed run, in order (rounds of equal length when interleaved)
    rounds: int = 1
    timing: str = "call"  # call: the runtime's plain API call, wall clock | bound: inference alone (see time_interleaved)
    machine: dict | None = None  # runtime.contention.Machine: was the machine free while this was timed?

    @property
    def cv(self) -> float:
        return self.std_ms / self.mean_ms if self.mean_ms else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = {**asdict(self), "cv": round(self.cv, 4)}
        if self.times_ms is None:
            del d["times_ms"], d["rounds"]
        if self.machine is None:
            del d["machine"]
        return d


def summarize(times_s: list[float], batch: int, threads: int, warmup: int) -> dict[str, float]:
    ms = np.asarray(times_s) * 1e3
    return {
        "batch": batch,
        "threads": threads,
        "iterations": len(ms),
        "warmup": warmup,
        "mean_ms": float(ms.mean()),
        "std_ms": float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "min_ms": float(ms.min()),
        "throughput_per_s": float(batch / (ms.mean() / 1e3)),
    }


TIMINGS = ("call", "bound")


def time_interleaved(
    sessions: list[Any], feeds: dict[str, np.ndarray], warmup: int, iterations: int, duration_s: float | None, rounds: int = 1, timing: str = "call"
) -> list[list[float]]:
    """Per-session run times. Rounds alternate between sessions; ``duration_s`` bounds the whole run.

    ``timing="call"`` (the default): wall time of the runtime's plain API call, numpy in and numpy out
    (``InferenceSession.run``, ``InferRequest.infer``) — what an application pays per inference, and
    the only clock on which two runtimes compare honestly. ``timing="bound"``: inputs bound once and
    inference alone timed (IOBinding; OpenVINO's own ``InferRequest.latency``), as benchmark_app and
    trtexec report it — for one artifact's figure, never for a ratio between runtimes."""
    # NOTE: measured on the digits CNN (2 threads): plain ORT run 18 us, plain OpenVINO infer 50 us, in
    # separate processes; bound with shared tensors OpenVINO took 25-29 us. Per-call overhead differs by
    # runtime, so the bound style made OpenVINO look 1.5x faster than ORT where an application saw 0.36x.
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {TIMINGS}, not {timing!r}")
    if timing == "bound":
        runners = [s.bind(feeds) if hasattr(s, "bind") else (lambda s=s: s.run(feeds)) for s in sessions]
    else:
        runners = [lambda s=s: s.run(feeds) for s in sessions]
    for r in runners:
        for _ in range(warmup):
            r()
    times: list[list[float]] = [[] for _ in sessions]
    rounds = max(1, min(rounds, iterations))
    per_round = -(-iterations // rounds)
    deadline = time.perf_counter() + duration_s if duration_s else None
    # NOTE: after a switch, the previous session's thread pool still spins for a while and competes for
    # the cores; a pause and untimed runs per round let it go idle, so a round times only the session itself.
    settle = 2 if len(sessions) > 1 else 0
    # NOTE: the order alternates between rounds (AB, BA, ...): whichever runs second in a round was seen
    # to gain a steady ~3% (two identical artifacts compared 1.03, CI 1.02-1.05), a bias no ratio should carry
    order = list(range(len(runners)))
    while True:
        for i in order:
            run = runners[i]
            if settle:
                time.sleep(SETTLE_PAUSE_S)
                warm_until = time.perf_counter() + SETTLE_RUN_S
                for k in itertools.count():
                    run()
                    if k + 1 >= settle and time.perf_counter() >= warm_until:
                        break
            for _ in range(per_round):
                t0 = time.perf_counter()
                own = run()
                elapsed = time.perf_counter() - t0
                times[i].append(own if isinstance(own, float) else elapsed)
        order.reverse()
        if deadline is None and len(times[0]) >= iterations:
            break
        if deadline is not None and time.perf_counter() >= deadline and len(times[0]) >= 2:
            break
    return [t[:iterations] if deadline is None else t for t in times]


def make_feeds(input_specs: list[Any], batch: int, data: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """A batch of real samples where given (repeated to fill the batch), else seeded random data."""

    fixed = fixed_batch(input_specs)
    if fixed is not None and batch != fixed:
        raise InputError(
            f"the model takes batches of exactly {fixed}; batch {batch} cannot be timed", hint=f"--batch {fixed}, or export the model with a dynamic batch"
        )
    feeds = example_inputs(input_specs, batch=batch)
    for name, arr in (data or {}).items():
        if name in feeds and len(arr):
            reps = -(-batch // len(arr))
            feeds[name] = np.concatenate([arr] * reps)[:batch].astype(feeds[name].dtype)
    return feeds


def run_worker(
    artifacts: list[Any],
    feeds: dict[str, np.ndarray],
    threads: int,
    warmup: int,
    iterations: int,
    duration_s: float | None,
    rounds: int,
    raw: bool = False,
    timing: str = "call",
) -> list[dict]:
    batch = int(next(iter(feeds.values())).shape[0])
    with tempfile.TemporaryDirectory(prefix="edgesmith-bench-") as tmp:
        feeds_path = Path(tmp) / "feeds.npz"
        np.savez(feeds_path, **feeds)  # type: ignore[arg-type]  # numpy's stub types **kwds as the allow_pickle flag
        job = {
            "artifacts": [{"backend": a.backend, "path": str(a.path), "options": a.options} for a in artifacts],
            "feeds": str(feeds_path),
            "threads": threads,
            "warmup": warmup,
            "iterations": iterations,
            "duration_s": duration_s,
            "batch": batch,
            "rounds": rounds,
            "raw": raw,
            "timing": timing,
            "parent": os.getpid(),
        }
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        proc = subprocess.run([sys.executable, "-m", "edgesmith.runtime.bench_worker"], input=json.dumps(job), capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        names = ", ".join(Path(a.path).name for a in artifacts)
        raise EdgesmithError(f"benchmark of {names} failed: {tail[:240]}", hint="run `edgesmith bench` on the artifact alone to see the full error")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def benchmark(
    artifact: Any, feeds: dict[str, np.ndarray], threads: int, warmup: int = 10, iterations: int = 100, duration_s: float | None = None, timing: str = "call"
) -> BenchStats:
    """Benchmark one artifact (runtime.base.Artifact) in a child process; returns its statistics."""
    return BenchStats(**run_worker([artifact], feeds, threads, warmup, iterations, duration_s, 1, timing=timing)[0])


def benchmark_against(
    candidate: Any,
    baseline: Any,
    feeds: dict[str, np.ndarray],
    threads: int,
    warmup: int = 10,
    iterations: int = 100,
    duration_s: float | None = None,
    rounds: int = 10,
    memory: bool = True,
) -> tuple[BenchStats, BenchStats]:
    """Latency of ``candidate`` and ``baseline`` timed interleaved in one child (a fair ratio on a
    noisy machine); peak memory of each from its own child (``memory=False``: not measured, the fields
    hold the shared timing child's figures — for a re-measurement whose caller keeps the first's)."""

    cand, base = run_worker([candidate, baseline], feeds, threads, warmup, iterations, duration_s, rounds, raw=True)
    if not memory:
        return BenchStats(**dict(cand, rounds=rounds)), BenchStats(**dict(base, rounds=rounds))
    # NOTE: memory is not timing: the two children that measure each artifact's peak memory run side by side
    with ThreadPoolExecutor(2) as pool:
        alone = list(pool.map(lambda art: run_worker([art], feeds, threads, 2, 5, None, 1)[0], (candidate, baseline)))
    for stats, mem in zip((cand, base), alone):
        stats.update(peak_rss_mb=mem["peak_rss_mb"], model_memory_mb=mem["model_memory_mb"], rounds=rounds)
    return BenchStats(**cand), BenchStats(**base)


def bench_until_stable(
    artifact: Any,
    feeds: dict[str, np.ndarray],
    threads: int,
    warmup: int,
    iterations: int,
    duration_s: float | None,
    cv_threshold: float,
    max_repeats: int,
    timing: str = "call",
) -> tuple[BenchStats, int]:
    """Repeat the measurement until its coefficient of variation is at most ``cv_threshold``
    (or ``max_repeats`` runs); returns the steadiest run and how many runs it took."""
    best: BenchStats | None = None
    for attempt in range(1, max_repeats + 1):
        stats = benchmark(artifact, feeds, threads, warmup, iterations, duration_s, timing)
        if best is None or stats.cv < best.cv:
            best = stats
        if stats.cv <= cv_threshold:
            return stats, attempt
    return best, max_repeats  # type: ignore[return-value]


def bench_artifact(
    path: Path,
    backend_name: str = "auto",
    *,
    target: str | None = None,
    threads: int | None = None,
    batches: list[int] | None = None,
    warmup: int = 10,
    iterations: int = 100,
    duration_s: float | None = None,
    input_shapes: list[dict] | None = None,
    ort_level: str = "all",
    until_stable: bool = False,
    cv_threshold: float = 0.10,
    max_repeats: int = 5,
    reporter: Any = None,
    timing: str = "call",
) -> list[dict[str, Any]]:
    """What ``edgesmith bench`` does: resolve backend, profile and inputs, then measure each batch size."""
    from edgesmith.runtime import backend_for_artifact

    rep = reporter or Reporter()
    if not path.is_file():
        raise InputError(f"artifact not found: {path}", hint="give the path of an .onnx model or an OpenVINO .xml")
    profile = None
    if target:
        profile = load_profile(target)
    detected = backend_for_artifact(path)
    name = detected if backend_name == "auto" else backend_name
    if name != detected:
        raise InputError(
            f"{path.name} is an artifact for {detected}; the {name} backend cannot run it", hint=f"use --backend {detected} (or leave --backend auto)"
        )
    if profile is not None and profile.backend != name:
        raise ConfigError(
            f"profile {profile.name} targets {profile.backend}, but {path.name} is an artifact for {name}",
            hint=f"compile for that profile first (`edgesmith compile ... -t {profile.name}`) or pick a profile for {name}",
        )
    artifact, specs = artifact_for(path, input_shapes, name, profile)
    if name == "onnxruntime":
        artifact.options["load_level"] = ort_level
    threads = threads or (profile.threads if profile else 2)
    batches = batches or (profile.batch_sizes if profile else [1])
    rows = []
    for b in batches:
        feeds = make_feeds(specs, b)
        with rep.step(f"benchmarking {path.name} on {name}, batch {b}, {threads} threads"):
            if until_stable:
                stats, repeats = bench_until_stable(artifact, feeds, threads, warmup, iterations, duration_s, cv_threshold, max_repeats, timing)
            else:
                stats, repeats = benchmark(artifact, feeds, threads, warmup, iterations, duration_s, timing), 1
        busy = bool(stats.machine and stats.machine.get("busy"))
        rows.append({**stats.as_dict(), "backend": name, "noisy": stats.cv > cv_threshold or busy, "repeats": repeats})
    return rows


def artifact_for(path: Path, input_shapes: list[dict] | None = None, backend_name: str | None = None, profile: Any = None) -> tuple[Any, list]:
    """An Artifact for a file on disk (backend from its type) and its checked input specs."""
    from edgesmith.runtime import Artifact, backend_for_artifact, get_backend

    if not path.is_file():
        raise InputError(f"artifact not found: {path}", hint="give the path of an .onnx model or an OpenVINO .xml")
    name = backend_name or backend_for_artifact(path)
    backend = get_backend(name)
    declared = backend.input_specs(path)
    if not declared:
        raise InputError(f"{path.name} has no inputs: there is nothing to feed it", hint="give a model that takes at least one input tensor")
    specs = [InputSpec.model_validate(s) for s in (input_shapes or declared)]
    check_specs_against_onnx(specs, declared)
    options = backend.default_options()
    if profile is not None and name == "openvino":
        options.update(profile.openvino.model_dump())
    return Artifact(path, name, options), specs
