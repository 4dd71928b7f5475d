"""The Python API's arguments held to the command line's rules: every count, size and fraction the CLI bounds
with an option's ``min``/``max`` is bounded here under the same name, so a notebook's ``threads=100000`` is the
one-line ConfigError ``--threads 100000`` is — not an ONNX Runtime asked for that many threads (it hung), a NaN
duration that never ends, or ``threads=0`` quietly run with the default. ``@checked`` applies the table to a
public function's arguments before any work; tests/test_api_arguments.py holds the table to the CLI's bounds."""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from edgesmith.errors import ConfigError
from edgesmith.schema import MAX_BATCH, MAX_ITERATIONS, MAX_SECONDS, MAX_SEED, MAX_THREADS
from edgesmith.units import parse_duration


@dataclass(frozen=True)
class Bound:
    """A number in [lo, hi] (whole when ``whole``); ``many``: a list of such numbers."""

    lo: float
    hi: float = math.inf
    whole: bool = True
    many: bool = False

    def check(self, name: str, value: Any) -> None:
        if self.many:
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
                raise ConfigError(f"{name} must be a non-empty list of numbers, got {_shown(value)}", hint=f"e.g. {name}=[{_num(self.lo)}]")
            for item in value:
                Bound(self.lo, self.hi, self.whole).check(f"{name} item", item)
            return
        kind = "a whole number" if self.whole else "a number"
        bounds = f">= {_num(self.lo)}" if self.hi == math.inf else f"in [{_num(self.lo)}, {_num(self.hi)}]"
        ok_type = isinstance(value, numbers.Integral if self.whole else numbers.Real) and not isinstance(value, bool)
        if not ok_type or not (math.isfinite(value) and self.lo <= value <= self.hi):
            flag = FLAGS.get(name.removesuffix(" item"), "--" + name.removesuffix("_s").replace("_", "-"))
            raise ConfigError(f"{name} must be {kind} {bounds}, got {_shown(value)}", hint=f"the same bounds as {flag} on the command line")


FLAGS = {"batches": "--batch", "samples": "--samples / --calibration-samples"}  # where the option's name is not the argument's


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:50] + " ..."


def _names(name: str, value: Any) -> None:
    """A target profile: a name or a .yaml path, or a non-empty list of them."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise ConfigError(
            f"{name} must be a profile name or a non-empty list of them, got {_shown(value)}",
            hint="e.g. target='x86-avx512-vnni-ort' (`edgesmith profiles` lists them)",
        )


def _train_budget(name: str, value: Any) -> None:
    """Epochs (a whole number >= 1, as --train-budget) or wall time with a unit (as --train-time)."""
    if isinstance(value, str):
        parse_duration(value, name)
    else:
        Bound(1).check(name, value)


# name -> the bounds its value must keep, as the command line's option of that name (None always passes: the default)
BOUNDS: dict[str, Bound] = {
    "threads": Bound(1, MAX_THREADS),
    "batch": Bound(1, MAX_BATCH),
    "batches": Bound(1, MAX_BATCH, many=True),
    "warmup": Bound(0, MAX_ITERATIONS),
    "iterations": Bound(1, MAX_ITERATIONS),
    "duration_s": Bound(0.001, MAX_SECONDS, whole=False),
    "rounds": Bound(2, 1000),
    "per_round": Bound(1, 10_000),
    "confidence": Bound(0.5, 0.999, whole=False),
    "trials": Bound(1, MAX_ITERATIONS),
    "workers": Bound(1, MAX_THREADS),
    "seed": Bound(0, MAX_SEED),
    "opset": Bound(13, 23),
    "samples": Bound(1),
}
RULES: dict[str, Callable[[str, Any], None]] = {name: b.check for name, b in BOUNDS.items()} | {"target": _names, "train_budget": _train_budget}

P = ParamSpec("P")
R = TypeVar("R")


def checked(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` with its arguments held to ``RULES`` (by parameter name) before it runs."""
    signature = inspect.signature(fn)
    ruled = [name for name in signature.parameters if name in RULES]

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        given = signature.bind(*args, **kwargs).arguments
        for name in ruled:
            if given.get(name) is not None:
                RULES[name](name, given[name])
        return fn(*args, **kwargs)

    return wrapper
