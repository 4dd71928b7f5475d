"""Measuring and gating: bench, compare, baseline_save, check, search, tune (``edgesmith.api`` re-exports them)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesmith.api.arguments import checked
from edgesmith.api.build import to_recipe
from edgesmith.errors import ConfigError, InputError
from edgesmith.gate import check_run, save_baseline
from edgesmith.gate.publish import write_gate_outputs
from edgesmith.outputs import load_manifest
from edgesmith.profiles import load_profile
from edgesmith.remote import client
from edgesmith.runtime.bench import artifact_for, bench_artifact, make_feeds
from edgesmith.runtime.compare import compare as run_compare
from edgesmith.schema import load_yaml
from edgesmith.search import Settings
from edgesmith.search import search as run_search
from edgesmith.tune import tune as run_tune
from edgesmith.units import parse_duration


@dataclass
class BenchResult:
    """One row per batch size: p50/p90/p95/p99/mean/std (ms), throughput, peak RSS, the noise flag."""

    rows: list[dict[str, Any]]

    def p50_ms(self, batch: int = 1) -> float:
        return next(float(r["p50_ms"]) for r in self.rows if int(r["batch"]) == batch)


@checked
def bench(
    artifact: str | Path,
    *,
    backend: str = "auto",
    target: str | None = None,
    threads: int | None = None,
    batches: list[int] | None = None,
    warmup: int = 10,
    iterations: int = 100,
    duration_s: float | None = None,
    inputs: list[dict] | None = None,
    until_stable: bool = False,
    reporter: Any = None,
    on: str | None = None,
) -> BenchResult:
    """Benchmark an artifact (.onnx or OpenVINO .xml) in a fresh process — ``edgesmith bench``; ``on``: on that
    device over SSH (``--on``)."""

    if on is not None:
        options: dict[str, Any] = {"backend": backend, "threads": threads, "batches": batches, "warmup": warmup, "iterations": iterations}
        options.update(duration_s=duration_s, input_shapes=inputs or [], until_stable=until_stable)
        rows, _ = client.bench(on, Path(artifact), options, load_profile(target) if target else None, reporter)
        return BenchResult(rows)

    return BenchResult(
        bench_artifact(
            Path(artifact),
            backend,
            target=target,
            threads=threads,
            batches=batches,
            warmup=warmup,
            iterations=iterations,
            duration_s=duration_s,
            input_shapes=inputs,
            until_stable=until_stable,
            reporter=reporter,
        )
    )


@checked
def compare(
    a: str | Path,
    b: str | Path,
    *,
    threads: int = 2,
    batch: int = 1,
    rounds: int = 20,
    per_round: int = 10,
    confidence: float = 0.95,
    inputs: list[dict] | None = None,
    on: str | None = None,
) -> Any:
    """Interleaved A/B latency of two artifacts: ``Comparison`` (ratio B/A of medians with its interval) — ``edgesmith compare``;
    ``on``: on that device over SSH (``--on``: a dict, as ``--json`` prints it)."""

    if on is not None:
        opts = {"threads": threads, "batch": batch, "rounds": rounds, "per_round": per_round, "confidence": confidence, "input_shapes": inputs or []}
        return client.compare(on, Path(a), Path(b), opts)[0]

    art_a, specs = artifact_for(Path(a), inputs)
    art_b, specs_b = artifact_for(Path(b), inputs)
    if [s.name for s in specs] != [s.name for s in specs_b]:
        raise InputError(f"{Path(a).name} and {Path(b).name} have different inputs", hint="compare two builds of the same model")
    return run_compare(art_a, art_b, make_feeds(specs, batch), threads, rounds, per_round, confidence=confidence)


@checked
def baseline_save(run_dir: str | Path, to: str | Path = "baseline.json", *, copy_artifacts: bool = True, device: str | None = None) -> dict[str, Any]:
    """Record a run as the CI gate's baseline — ``edgesmith baseline save``; returns what was written. ``device``: the
    run as that device measured it (validated there first unless it was already: ``--device``)."""

    if device is not None:
        _measured_on(device, Path(run_dir))
        return save_baseline(Path(run_dir), Path(to), copy_artifacts=copy_artifacts, device=device)
    return save_baseline(Path(run_dir), Path(to), copy_artifacts=copy_artifacts)


@checked
def check(
    run_dir: str | Path,
    baseline: str | Path = "baseline.json",
    *,
    out_dir: str | Path | None = None,
    force: bool = False,
    strict: bool = False,
    remeasure: bool = True,
    reporter: Any = None,
    device: str | None = None,
) -> Any:
    """Gate a run against a baseline — ``edgesmith check``: a ``GateReport`` (``.verdict``, ``.findings``); the
    JUnit, Markdown and HTML outputs are written to ``out_dir`` (default RUN_DIR/check). ``device``: the run as that
    device measured it, re-timed there against the baseline (``--device``)."""

    started = time.time()
    timer = None
    if device is not None:
        _measured_on(device, Path(run_dir))
        timer = client.pair_timer(device)
    report = check_run(Path(run_dir), Path(baseline), force=force, remeasure=remeasure, strict=strict, reporter=reporter, device=device, pair_timer=timer)
    write_gate_outputs(report, report.baseline, report.manifest, Path(out_dir) if out_dir else Path(run_dir) / "check", time.time() - started)
    return report


def _measured_on(device: str, run_dir: Path) -> None:
    """The run validated on ``device`` and recorded in it, unless it was already."""
    if device not in (load_manifest(run_dir).get("devices") or {}):
        result, _ = client.validate(device, run_dir)
        client.record(run_dir, result)


@checked
def search(
    recipe: Any,
    *,
    out_dir: str | Path = "edgesmith-out/search",
    target: str | None = None,
    trials: int | None = None,
    time_budget_s: float | None = None,
    sampler: str = "auto",
    workers: int | None = None,
    storage: str | None = None,
    seed: int = 0,
    reporter: Any = None,
    force: bool = False,
    time_budget: str | float | None = None,
    dry_run: bool = False,
    cache_dir: str | Path | None = None,
    device: str | None = None,
) -> Any:
    """The Pareto front over the choices a recipe marks — ``edgesmith search``; ``device``: trials timed there (``--device``). ``recipe``: a dict or a YAML path
    (choices are marked in the raw recipe, so a parsed ``Recipe`` is not accepted). Returns a ``SearchResult``.
    ``time_budget``: as on the command line (``"90s"``, ``"30m"``; a number is seconds), over ``time_budget_s``."""
    if time_budget is not None:
        time_budget_s = parse_duration(time_budget, "time_budget", bare_seconds=True)
    elif time_budget_s is not None:
        time_budget_s = parse_duration(time_budget_s, "time_budget_s", bare_seconds=True)  # NaN, 0 and negatives refused

    if isinstance(recipe, dict):
        data, base = recipe, Path.cwd()
    else:
        path = Path(recipe)
        if not path.is_file():
            raise ConfigError(f"recipe not found: {path}", hint="give a recipe .yaml path or a dict")
        data, base = load_yaml(path, "recipe"), path.parent.absolute()
    settings = Settings(
        trials=trials, time_budget_s=time_budget_s, sampler=sampler, workers=workers, storage=storage, seed=seed, force=force, dry_run=dry_run, device=device
    )
    settings.cache_dir = Path(cache_dir) if cache_dir else None
    return run_search(data, base, Path(out_dir), target=target, settings=settings, reporter=reporter)


@checked
def tune(
    recipe: Any,
    *,
    out_dir: str | Path | None = None,
    time_budget: str | float = "5m",
    cache_dir: str | Path | None = None,
    reporter: Any = None,
    force: bool = False,
    trust_checkpoint: bool = False,
) -> Any:
    """Search ``ptq_int8`` settings until the target's accuracy budget holds — ``edgesmith tune``. ``recipe``: a
    ``Recipe``, a dict or a YAML path. Returns a ``TuneResult`` (``.best``, ``.candidates``, ``.verdict``).
    ``time_budget``: ``"90s"``, ``"5m"`` (a number is seconds). ``cache_dir``: the pass cache, as ``--cache``."""
    rec, base = to_recipe(recipe)
    budget, out = parse_duration(time_budget, "time_budget", bare_seconds=True), Path(out_dir) if out_dir else None
    cache = Path(cache_dir) if cache_dir else None
    return run_tune(rec, base, out_dir=out, time_budget_s=budget, reporter=reporter, force=force, trust_checkpoint=trust_checkpoint, cache_dir=cache)
