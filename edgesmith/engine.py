"""The one search engine: ``search``, ``optimize`` and ``tune`` are presets of it.

A preset says what to try and how to build it; the engine runs the loop, the same for all three:

    propose a wave (search: the study's sampler; optimize: the candidates its policy gives for the
    model's structure; tune: its next stage, from the results so far)
    → build the wave (a pool of processes or Ray for the search; in this process for optimize and tune,
      which quantize one export and share its calibration)
    → time the built trials alone, interleaved with the float model (search.measure.race: the one
      measurement path, busy-machine detection and retries included)
    → tell the preset, which judges each trial against the target's budgets (evaluate.judge) and stores it
    → until the preset has nothing more to propose or the time budget is spent.

Every trial, whichever preset proposed it, is one ``TrialRecord``; the winner is chosen by the preset with the one keep-rule
(``evaluate.judge.pick_fastest``: the fastest, unless the measurement cannot tell it from others, then the
most faithful of those).
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol


@dataclass
class TrialRecord:
    """One trial: what was tried (``params``, ``label``; optimize's policy ``plan``, tune's ``stage``), how its
    build went (``state``, ``error``, ``metrics``), its timing against FP32 (``speedup`` with the interval
    ``low``-``high``, ``busy`` when the machine was) and the judge's word (``feasible``: within every budget
    judged; else ``gaps`` and ``shortfall``). ``status``/``reason`` are the preset's verdict on it (optimize:
    winner, slower, accuracy...)."""

    number: int
    params: dict[str, Any]
    label: str
    state: str  # pending | complete | failed | skipped
    accuracy: float | None = None
    latency_ms: float | None = None
    size_mb: float | None = None
    speedup: float | None = None
    low: float | None = None
    high: float | None = None
    feasible: bool = False
    shortfall: float = 0.0
    gaps: list[str] = field(default_factory=list)
    error: str = ""
    node: str = ""
    timing_node: str = ""
    seconds: float = 0.0
    cache: dict[str, int] = field(default_factory=dict)
    busy: bool = False
    on_front: bool = False
    stage: str = ""  # where the proposal came from: tune's stage, optimize's "why tried"
    metrics: dict[str, float] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)  # p50/p90/p95/p99 ms and FP32's p50 in the same race
    status: str = ""
    reason: str = ""
    plan: Any = None  # optimize: the policy's Plan (name, runtime, pass, options, why)
    artifact: Any = None  # the compiled artifact, while the engine runs (not stored)

    @property
    def p50_ms(self) -> float | None:
        return self.timing.get("p50_ms")

    def as_dict(self) -> dict[str, Any]:
        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name not in ("plan", "artifact")}
        return {**(asdict(self.plan) if self.plan is not None else {}), **d}


@dataclass
class Timing:
    """What a wave is timed against: the float model's artifact on the target, the inputs, the threads, and
    who times (a local race, or the Ray node tagged with the target)."""

    reference: Any
    feeds: dict
    threads: int
    measure: Callable[..., tuple[list[dict | None], dict | None, str]]
    rounds: int = 10


class Preset(Protocol):
    def propose(self, done: list[TrialRecord], out_of_time: bool) -> list[TrialRecord]:
        """The next wave (numbered), or [] when there is nothing more to try."""
        ...

    def build(self, wave: list[TrialRecord], out_of_time: Callable[[], bool]) -> None:
        """Build, compile and evaluate each trial: ``state``, ``metrics``, ``artifact`` or ``error``."""
        ...

    def timing(self, wave: list[TrialRecord]) -> tuple[Timing, list[TrialRecord]] | None:
        """What to time from this wave, and against what (None: this preset does not time)."""
        ...

    def tell(self, wave: list[TrialRecord]) -> None:
        """Judge the wave's trials (budgets, gaps) and store them."""
        ...


@dataclass
class Outcome:
    records: list[TrialRecord]
    out_of_time: bool
    machine: dict | None = None  # runtime.contention's record of the last race
    build_seconds: float = 0.0
    timing_seconds: float = 0.0


def run(preset: Preset, time_budget_s: float | None = None, reporter: Any = None, started: float | None = None) -> Outcome:
    """Propose, build, time, tell, until the preset is done or ``time_budget_s`` (from ``started``) is spent."""
    started = time.time() if started is None else started

    def spent() -> bool:
        return time_budget_s is not None and time.time() - started > time_budget_s

    out = Outcome([], False)
    while True:
        wave = preset.propose(out.records, spent())
        if not wave:
            break
        t0 = time.time()
        preset.build(wave, spent)
        out.build_seconds += time.time() - t0
        what = preset.timing(wave)
        if what is not None:
            t0 = time.time()
            out.machine = time_wave(*what, reporter=reporter) or out.machine
            out.timing_seconds += time.time() - t0
        preset.tell(wave)
        out.records.extend(wave)
    out.out_of_time = spent()
    return out


def time_wave(timing: Timing, runners: list[TrialRecord], reporter: Any = None) -> dict | None:
    """Time ``runners`` (built trials) interleaved with the float model; fills each one's speed-up over FP32
    with its interval, its latency percentiles and ``busy``; a trial that could not be timed is failed."""
    runners = [r for r in runners if r.artifact is not None]
    if not runners:
        return None
    errors: dict[int, str] = {}
    timed, machine, node = timing.measure(
        [r.artifact for r in runners], timing.reference, timing.feeds, timing.threads, reporter=reporter, errors=errors, rounds=timing.rounds
    )
    for i, (r, rec) in enumerate(zip(runners, timed)):
        r.timing_node = node
        if rec is None:
            r.state, r.error = "failed", f"timing failed: {errors.get(i, 'could not be timed')}"
            continue
        r.speedup, r.low, r.high, r.busy = rec["speedup"], rec["low"], rec["high"], bool(rec.get("busy"))
        r.timing = {k: rec[k] for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "fp32_p50_ms") if k in rec}
    return machine


def store_study(records: list[TrialRecord], folder: Path, preset: str, objectives: dict[str, str]) -> str | None:
    """The trials of a preset that proposes its own (optimize, tune) stored as the search stores its trials:
    an Optuna study, ``study.db`` in the output folder (readable with Optuna's tools, e.g. optuna-dashboard),
    each trial's whole record in its user attributes. ``objectives``: record field -> maximize | minimize.
    Written aside and moved into place. Returns a note instead when Optuna is not installed."""
    try:
        import optuna
    except ImportError:
        return "no study.db: Optuna is not installed (pip install 'edgesmith[search]')"
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tmp = folder / ".study.db.tmp"
    tmp.unlink(missing_ok=True)
    study = optuna.create_study(storage=f"sqlite:///{tmp}", study_name=f"edgesmith-{preset}", directions=list(objectives.values()))  # type: ignore[arg-type]
    for r in records:
        values = [getattr(r, k) for k in objectives]
        done = r.state == "complete" and all(isinstance(v, (int, float)) and v == v for v in values)
        attrs = json.loads(json.dumps(r.as_dict(), default=str))
        study.add_trial(create_trial(state=TrialState.COMPLETE if done else TrialState.FAIL, values=values if done else None, user_attrs=attrs))
    del study
    os.replace(tmp, folder / "study.db")
    return None
