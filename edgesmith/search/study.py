"""The study: Optuna's record of every trial, in a real database (SQLite in the search folder by
default, any SQLAlchemy URL when given), so a search can be inspected with Optuna's own tools and
resumed: trials complete are kept, trials cut off mid-way are run again under their own number.

Objectives: task accuracy (maximise), latency in ms (minimise; the FP32 latency of the first timing
race divided by the trial's speed-up over FP32 in its own race, so races at different times compare),
artifact size in MB (minimise). The target's budgets are Optuna constraints (``Trial.set_constraint``, one
per budget, > 0 when it fails): TPE and NSGA-II steer away from infeasible regions.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Literal

from edgesmith.errors import ConfigError

DIRECTIONS: list[Literal["maximize", "minimize"]] = ["maximize", "minimize", "minimize"]
OBJECTIVES = ("accuracy", "latency_ms", "size_mb")
SAMPLERS = ("auto", "grid", "random", "tpe", "nsga2")


def make_sampler(name: str, seed: int, population: int) -> Any:
    import optuna

    if name in ("grid", "random"):  # grid: every combination is enqueued up front (open_study); nothing left to sample
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, population)))
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(2, population))
    raise ConfigError(f"unknown sampler {name!r}", hint=f"one of {', '.join(SAMPLERS)}")


def resolve_sampler(name: str, grid_size: int | None, trials: int | None) -> str:
    """``auto``: the whole grid when it fits in the trial budget, else TPE (multi-objective, constrained)."""
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}", hint=f"one of {', '.join(SAMPLERS)}")
    if name != "auto":
        if name == "grid" and grid_size is None:
            raise ConfigError("grid search needs every range to have a step", hint="add `step:` to each range, or use --sampler tpe")
        return name
    return "grid" if grid_size is not None and (trials is None or grid_size <= trials) else "tpe"


def open_study(storage: str, name: str, sampler: Any, grid: list[dict] | None, attrs: dict[str, Any]) -> Any:
    """Create the study, or load it when it exists (resume). A new grid study enqueues every combination
    in order; Optuna hands them out one by one, also across a resume."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for attempt in range(6):
        try:
            study = optuna.create_study(storage=storage, study_name=name, sampler=sampler, directions=DIRECTIONS, load_if_exists=True)
            break
        except Exception as exc:  # noqa: BLE001 - a bad URL or an unreadable database: one line, with the cause
            # NOTE: two processes creating one new database race on its schema (alembic_version UNIQUE, "database is
            # locked"): the loser finds it made a moment later
            if type(exc).__name__ in ("IntegrityError", "OperationalError") and attempt < 5:
                time.sleep(0.2 * (attempt + 1))
                continue
            raise ConfigError(
                f"cannot open the study database {storage}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                hint="give a SQLAlchemy URL such as sqlite:///study.db, or leave --storage out",
            ) from None
    if not study.user_attrs:
        for k, v in attrs.items():
            study.set_user_attr(k, v)
        for params in grid or []:
            study.enqueue_trial(params)
    return study


OWNER = "edgesmith_owner"  # the process that runs a trial: host, pid and that process's start time


def _start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot): a pid reused by another process differs in it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def _alive(who: Any) -> bool | None:
    """True/False for a process of this host; None for another host's (it cannot be told from here)."""
    if not isinstance(who, dict) or who.get("host") != socket.gethostname():
        return None if isinstance(who, dict) else False
    pid = who.get("pid")
    return isinstance(pid, int) and pid != os.getpid() and _start_time(pid) is not None and _start_time(pid) == who.get("start")


def orphans(study: Any) -> list[Any]:
    """Trials a process started and never finished (it was interrupted, or died): run again, same number.
    A trial another live process is running is not one — two searches may share one study (``--storage``) and
    neither runs the other's trials; a trial owned by a process on another host is left to it."""
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return sorted((t for t in running if _alive(t.user_attrs.get(OWNER)) is False), key=lambda t: t.number)


def others_running(study: Any) -> list[Any]:
    """Running trials of other live processes (or hosts): theirs, not ours to run."""
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return [t for t in running if _alive(t.user_attrs.get(OWNER)) is not False]


def finished(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))


def canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, default=str)
