"""Latency of an artifact against its float model on the same runtime, filed under budget metric names."""

from __future__ import annotations

from typing import Any

from edgesmith.progress import Reporter


def record_latency(metrics: dict[str, Any], reference: dict[str, Any], batch: int, cand: Any, base: Any,
                   latency: dict[str, dict], first_batch: bool) -> None:
    """File one batch size's interleaved measurement (runtime.bench.BenchStats of candidate and FP32)
    under the metric names budgets use (``latency_p90_ms@1``, ``speedup_vs_fp32@1``, ...)."""
    latency["compressed"][batch], latency["fp32"][batch] = cand.as_dict(), base.as_dict()
    for src, dst in ((cand, metrics), (base, reference)):
        for p in ("p50", "p90", "p95", "p99"):
            dst[f"latency_{p}_ms@{batch}"] = getattr(src, f"{p}_ms")
        dst[f"latency_mean_ms@{batch}"] = src.mean_ms
    metrics[f"speedup_vs_fp32@{batch}"] = base.p50_ms / cand.p50_ms
    reference[f"speedup_vs_fp32@{batch}"] = 1.0
    if first_batch:
        metrics["peak_memory_mb"], reference["peak_memory_mb"] = cand.peak_rss_mb, base.peak_rss_mb


def time_against_float(artifact: Any, fp32_artifact: Any, specs: list, profile: Any, real: dict | None, metrics: dict[str, Any],
                       reference: dict[str, Any], *, warmup: int = 10, iterations: int = 100, duration_s: float | None = None,
                       reporter: Reporter | None = None, label: str = "") -> dict[str, dict]:
    """Each of the profile's batch sizes timed interleaved with the float model; fills ``metrics`` and
    ``reference`` and returns every sample (``{"compressed": {batch: ...}, "fp32": {...}}``)."""
    from edgesmith.runtime.bench import benchmark_against, make_feeds

    rep = reporter or Reporter()
    latency: dict[str, dict] = {"compressed": {}, "fp32": {}}
    for batch in profile.batch_sizes:
        feeds = make_feeds(specs, batch, real)
        with rep.step(f"{label}benchmarking batch {batch} ({profile.threads} threads)"):
            cand, base = benchmark_against(artifact, fp32_artifact, feeds, profile.threads, warmup, iterations, duration_s)
        record_latency(metrics, reference, batch, cand, base, latency, batch == profile.batch_sizes[0])
    return latency
