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
import time
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


def orphans(study: Any) -> list[Any]:
    """Trials a previous process started and never finished (it was interrupted): run again, same number.
    One search process per study at a time (the search folder's lock), so every running trial is one."""
    from optuna.trial import TrialState

    return sorted(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)), key=lambda t: t.number)


def finished(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))


def canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, default=str)
