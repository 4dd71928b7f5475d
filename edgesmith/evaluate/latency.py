"""Latency of an artifact against its float model on the same runtime, filed under budget metric names.

Every timed metric also gets a 95% interval (``<metric>_low@B`` / ``<metric>_high@B``) from a block
bootstrap over the interleaved rounds, so budgets are judged on what the measurement can support:
pass when surely within, fail when surely outside, and "inconclusive" in between (``evaluate.judge``).
When a budget is inconclusive the batch is measured again (rounds pooled), up to ``MAX_EXTRA`` times.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgesmith.evaluate.judge import judge
from edgesmith.progress import Reporter
from edgesmith.runtime.base import same_model
from edgesmith.runtime.bench import BenchStats, benchmark_against, make_feeds, summarize
from edgesmith.runtime.compare import bootstrap_ratio, pooled_percentiles
from edgesmith.runtime.contention import busy_retries, merged, wait_for_quiet

MAX_EXTRA = 2  # extra measurements of one batch size while a latency budget stays inconclusive
CONFIDENCE = 0.95


def _rounds(stats: Any) -> list[np.ndarray]:
    times = np.asarray(stats.times_ms or [stats.p50_ms])
    n = max(1, int(getattr(stats, "rounds", 1) or 1))
    return [r for r in np.array_split(times, n) if len(r)]


def _percentile_interval(rounds: list[np.ndarray], q: float, seed: int = 0, resamples: int = 1000) -> tuple[float, float]:

    rng = np.random.default_rng(seed)
    vals = pooled_percentiles(rounds, rng.integers(0, len(rounds), size=(resamples, len(rounds))), q)
    tail = (1.0 - CONFIDENCE) / 2.0 * 100.0
    low, high = np.percentile(vals, [tail, 100.0 - tail])
    return float(low), float(high)


def record_latency(metrics: dict[str, Any], reference: dict[str, Any], batch: int, cand: Any, base: Any, latency: dict[str, dict], first_batch: bool) -> None:
    """File one batch size's interleaved measurement (runtime.bench.BenchStats of candidate and FP32)
    under the metric names budgets use (``latency_p90_ms@1``, ``speedup_vs_fp32@1``, ...), each with its interval."""

    latency["compressed"][batch], latency["fp32"][batch] = cand.as_dict(), base.as_dict()
    for src, dst in ((cand, metrics), (base, reference)):
        rounds = _rounds(src) if dst is metrics else []  # NOTE: budgets judge the candidate; the float side needs no interval
        for p, q in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99)):
            dst[f"latency_{p}_ms@{batch}"] = getattr(src, f"{p}_ms")
            if len(rounds) > 1:
                dst[f"latency_{p}_ms_low@{batch}"], dst[f"latency_{p}_ms_high@{batch}"] = _percentile_interval(rounds, q)
        dst[f"latency_mean_ms@{batch}"] = src.mean_ms
    metrics[f"speedup_vs_fp32@{batch}"] = base.p50_ms / cand.p50_ms
    c, b = _rounds(cand), _rounds(base)
    if len(c) > 1 and len(c) == len(b):
        _, low, high = bootstrap_ratio(c, b, confidence=CONFIDENCE, resamples=1000)  # median(FP32) / median(candidate)
        metrics[f"speedup_vs_fp32_low@{batch}"], metrics[f"speedup_vs_fp32_high@{batch}"] = low, high
    reference[f"speedup_vs_fp32@{batch}"] = 1.0
    # NOTE: peak memory is the largest over the batch sizes (the largest batch, as a rule), not the first's
    for dst, value in ((metrics, cand.peak_rss_mb), (reference, base.peak_rss_mb)):
        dst["peak_memory_mb"] = value if first_batch else max(dst.get("peak_memory_mb", 0.0), value)


def _pooled(a: Any, b: Any) -> Any:
    """Two measurements of the same pair as one: rounds and samples pooled, statistics recomputed."""

    times = list(a.times_ms or []) + list(b.times_ms or [])
    d = {**a.as_dict(), **summarize([t / 1e3 for t in times], a.batch, a.threads, a.warmup)}
    d.pop("cv", None)
    d.update(
        times_ms=times,
        rounds=a.rounds + b.rounds,
        peak_rss_mb=max(a.peak_rss_mb, b.peak_rss_mb),
        model_memory_mb=max(a.model_memory_mb, b.model_memory_mb),
        machine=merged([a.machine, b.machine]),
    )
    return BenchStats(**d)


def _busy(stats: Any) -> bool:
    return bool(stats.machine and stats.machine.get("busy"))


def time_against_float(
    artifact: Any,
    fp32_artifact: Any,
    specs: list,
    profile: Any,
    real: dict | None,
    metrics: dict[str, Any],
    reference: dict[str, Any],
    *,
    warmup: int = 10,
    iterations: int = 100,
    duration_s: float | None = None,
    reporter: Reporter | None = None,
    label: str = "",
) -> dict[str, dict]:
    """Each of the profile's batch sizes timed interleaved with the float model; fills ``metrics`` and
    ``reference`` and returns every sample (``{"compressed": {batch: ...}, "fp32": {...}}``).

    A batch whose latency budget the measurement cannot settle is measured again, up to MAX_EXTRA times
    (rounds pooled). A measurement taken while other work competed for the cores (runtime.contention)
    is biased, not noisy: it is never pooled with a clean one but replaced, after waiting for the
    machine to quiet down; if every try was busy, the record says so and the judge rules nothing on time."""

    rep = reporter or Reporter()
    itself = same_model(artifact, fp32_artifact)  # the float model against itself: its speed-up is exactly 1
    latency: dict[str, dict] = {"compressed": {}, "fp32": {}}
    for batch in profile.batch_sizes:
        feeds = make_feeds(specs, batch, real)
        cand: Any = None
        base: Any = None
        for attempt in range(1 + MAX_EXTRA):
            if cand is not None and _busy(cand):
                with rep.step(f"{label}the machine was busy while timing ({cand.machine['reasons'][0]}): waiting for it to quiet down"):
                    wait_for_quiet(profile.threads)
            more = " (again: a latency budget was inconclusive)" if attempt and not _busy(cand) else " (again: the machine was busy)" if attempt else ""
            with rep.step(f"{label}benchmarking batch {batch} ({profile.threads} threads){more}"):
                c, b = benchmark_against(artifact, fp32_artifact, feeds, profile.threads, warmup, iterations, duration_s, memory=cand is None)
            if cand is not None:  # a re-measurement times again; memory was measured once, in children of its own
                for new, first in ((c, cand), (b, base)):
                    new.peak_rss_mb, new.model_memory_mb = first.peak_rss_mb, first.model_memory_mb
            if cand is None or (_busy(cand) and not _busy(c)):
                cand, base = c, b
            elif _busy(c) == _busy(cand):
                cand, base = _pooled(cand, c), _pooled(base, b)
            # NOTE: a busy re-measurement after a clean one is dropped: it would bias the pooled rounds
            record_latency(metrics, reference, batch, cand, base, latency, batch == profile.batch_sizes[0])
            if itself:
                metrics[f"speedup_vs_fp32@{batch}"] = metrics[f"speedup_vs_fp32_low@{batch}"] = metrics[f"speedup_vs_fp32_high@{batch}"] = 1.0
            unsure = [v for v in judge(profile, metrics, reference, latency) if v.status == "inconclusive" and v.batch == batch]
            if (not unsure and not _busy(cand)) or (_busy(c) and attempt >= busy_retries()):
                break
        if _busy(cand):
            rep.info(
                f"{label}batch {batch} was timed on a busy machine ({'; '.join(cand.machine['reasons'])}): "
                "latency budgets are not judged and speed-ups are not claimed"
            )
    return latency
