"""The search space a recipe marks: which values ``edgesmith search`` may choose.

A value anywhere under ``passes:`` becomes a choice when written as ``{search: ...}``::

    passes:
      - type: prune_channels
        ratio: {search: [0.3, 0.5, 0.7]}               # one of these
        recover: {epochs: {search: {low: 4, high: 12, step: 4}}}   # an integer range (step for grid search)
      - type: ptq_int8
        enabled: {search: [true, false]}                # the pass itself is optional
        calibration: {search: [minmax, entropy]}
      - search:                                         # one of several whole passes, or none (null)
          - {type: ptq_int8}
          - {type: nncf_ptq, preset: performance}
          - null

Numeric ranges: ``{low, high}`` with optional ``step`` and ``log``; integers when both ends are.
Every choice is checked against its pass's own config before any trial runs (a typo fails in one line).
Choices nested inside a pass alternative are conditional: sampled only when that alternative is.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgesmith.errors import ConfigError

MARK = "search"
MAX_GRID = 10_000


@dataclass(frozen=True)
class Param:
    """One choice: a categorical list or a numeric range, at ``path`` in the recipe's passes."""

    name: str
    choices: tuple | None = None  # categorical (labels Optuna stores; values below)
    values: tuple | None = None  # what each label stands for (whole pass specs for alternatives)
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    integer: bool = False
    when: tuple[tuple[str, str], ...] = ()  # (param, label) this one depends on

    def grid(self) -> list:
        if self.choices is not None:
            return list(self.choices)
        if self.step is None:
            raise ConfigError(f"grid search needs a step for the range {self.name}", hint="add `step:` to the range, or use --sampler tpe/random")
        low, high = float(self.low or 0.0), float(self.high or 0.0)  # a range always has both (checked when read)
        # NOTE: low, low + step, ... never past high (as Optuna steps): rounding the count (2..8 step 4 gave 2, 6, 10)
        # put values out of the range; the count is known before anything is allocated
        n = int(np.floor((high - low) / self.step + 1e-9)) + 1
        if n > MAX_GRID:
            raise ConfigError(
                f"the range {self.name} ({self.low:g}..{self.high:g} step {self.step:g}) has {n} values, more than {MAX_GRID}",
                hint="a larger step, or no step (continuous, with --sampler tpe or random)",
            )
        vals = [low + i * self.step for i in range(n)]
        out = [int(round(v)) for v in vals] if self.integer else [round(v, 10) for v in vals]
        return [v for v in out if low - 1e-9 <= v <= high + 1e-9]

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.name}: {', '.join(map(str, self.choices))}"
        text = f"{self.name}: {self.low:g}..{self.high:g}" + (f" step {self.step:g}" if self.step else "") + (" (log)" if self.log else "")
        if self.step is not None:
            try:
                vals = self.grid()
            except ConfigError:
                return text
            shown = ", ".join(f"{v:g}" for v in vals[:6]) + (", ..." if len(vals) > 6 else "")
            text += f" = {shown} ({len(vals)} values)"
        return text


@dataclass
class Space:
    """The recipe's passes with marks left in, and the parameters found in them."""

    passes: list
    params: list[Param] = field(default_factory=list)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Ask an Optuna trial for a value of every parameter that applies (define-by-run: a choice
        inside an alternative is asked only when that alternative was picked)."""
        values: dict[str, Any] = {}
        for p in self.params:
            if not all(values.get(dep) == label for dep, label in p.when):
                continue
            if p.choices is not None:
                values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
            elif p.integer:
                values[p.name] = trial.suggest_int(p.name, int(p.low or 0), int(p.high or 0), step=int(p.step or 1), log=p.log)
            else:
                values[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
        return values

    def grid(self) -> list[dict[str, Any]]:
        """Every combination (conditional parameters only under the alternative they belong to)."""
        combos: list[dict[str, Any]] = [{}]
        for p in self.params:
            nxt = []
            for c in combos:
                if all(c.get(dep) == label for dep, label in p.when):
                    nxt += [{**c, p.name: v} for v in p.grid()]
                else:
                    nxt.append(c)
            combos = nxt
            if len(combos) > MAX_GRID:
                raise ConfigError(f"the grid has more than {MAX_GRID} combinations", hint="use --sampler tpe or random, or narrow the choices")
        # the first pass's choices vary fastest: trials built side by side then differ in their first passes, and
        # the trials that share a prefix come in later waves, when the cache holds it (not two builds of it at once)
        order = {p.name: {json.dumps(v): i for i, v in enumerate(p.grid())} for p in self.params}
        return sorted(combos, key=lambda c: [order[p.name].get(json.dumps(c.get(p.name, None)), -1) for p in reversed(self.params)])

    def size(self) -> int | None:
        """Number of distinct combinations (None when a range has no step: continuous)."""
        try:
            return len(self.grid())
        except ConfigError:
            return None

    def concrete(self, values: dict[str, Any]) -> list[dict]:
        """The pass list with every mark replaced by the chosen value (passes switched off dropped)."""
        out = []
        for i, spec in enumerate(self.passes):
            if isinstance(spec, dict) and "enabled" in spec:
                en = values.get(f"passes[{i}]/enabled") if _is_mark(spec["enabled"]) else spec["enabled"]
                if en is False:
                    continue  # its own choices were not asked: they do not apply
                spec = {k: v for k, v in spec.items() if k != "enabled"}
            spec = _fill(spec, f"passes[{i}]", values)
            if spec is not None:
                out.append(spec)
        return out

    def label(self, values: dict[str, Any]) -> str:
        """Short: ``prune_channels, ratio=0.5, ptq_int8=on``."""

        parts = []
        for k, v in values.items():
            m = re.fullmatch(r"passes\[(\d+)\](?:/(.*))?", k)
            rest = m.group(2) if m else k
            spec = self.passes[int(m.group(1))] if m else {}
            if rest is None:
                parts.append("no pass" if v == "none" else str(v))
            elif rest == "enabled":
                parts.append(f"{spec.get('type', 'pass') if isinstance(spec, dict) else 'pass'}={'on' if v else 'off'}")
            else:
                name = rest.split("/", 1)[1] if isinstance(spec, dict) and _is_mark(spec) and "/" in rest else rest
                parts.append(f"{name.replace('/', '.')}={v}")
        return ", ".join(parts) or "the recipe as written"


def _is_mark(v: Any) -> bool:
    return isinstance(v, dict) and set(v) == {MARK}


def _fill(node: Any, path: str, values: dict[str, Any]) -> Any:
    if _is_mark(node):
        p_values = values.get(path, _MISSING)
        if p_values is _MISSING:
            raise ConfigError(f"no value chosen for {path}", hint="internal: the space and the trial disagree")
        spec = node[MARK]
        if isinstance(spec, list) and any(isinstance(c, dict) or c is None for c in spec):  # whole-pass alternatives
            alt = spec[_labels(spec).index(p_values)]
            return None if alt is None else _fill(alt, f"{path}/{_labels(spec)[spec.index(alt)]}", values)
        return p_values
    if isinstance(node, dict):
        return {k: _fill(v, f"{path}/{k}", values) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, f"{path}[{j}]", values) for j, v in enumerate(node)]
    return node


_MISSING = object()


def _labels(alternatives: list) -> list[str]:
    """Optuna stores plain values: whole-pass alternatives become labels (type, #n when repeated, none)."""
    seen: dict[str, int] = {}
    labels = []
    for a in alternatives:
        base = "none" if a is None else str(a.get("type", "pass"))
        seen[base] = seen.get(base, 0) + 1
        labels.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return labels


def _scalar_ok(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _collect(node: Any, path: str, when: tuple, out: list[Param]) -> None:
    if _is_mark(node):
        spec = node[MARK]
        if isinstance(spec, list):
            if not spec:
                raise ConfigError(f"{path}: `search:` lists no choices", hint="give at least two values, e.g. {search: [0.3, 0.5]}")
            if any(isinstance(c, dict) or c is None for c in spec) and path.count("/") == 0:
                if not all(c is None or (isinstance(c, dict) and "type" in c) for c in spec):
                    raise ConfigError(f"{path}: pass alternatives must each be a pass ({{type: ...}}) or null", hint="e.g. search: [{type: ptq_int8}, null]")
                labels = _labels(spec)
                out.append(Param(path, choices=tuple(labels), values=tuple(spec), when=when))
                for label, alt in zip(labels, spec):
                    if alt is not None:
                        _collect(alt, f"{path}/{label}", when + ((path, label),), out)
                return
            bad = [c for c in spec if not _scalar_ok(c)]
            if bad:
                raise ConfigError(
                    f"{path}: a choice must be a number, string, true/false or null, got {json.dumps(bad[0])[:60]}",
                    hint="whole passes can be alternatives only as an entry of passes:",
                )
            if len(set(map(json.dumps, spec))) != len(spec):
                raise ConfigError(f"{path}: a choice is listed twice: {spec}", hint="list each value once")
            out.append(Param(path, choices=tuple(spec), values=tuple(spec), when=when))
            return
        if isinstance(spec, dict):
            unknown = set(spec) - {"low", "high", "step", "log"}
            if unknown or not {"low", "high"} <= set(spec):
                raise ConfigError(
                    f"{path}: a range is {{low: ..., high: ..., step: ..., log: ...}}, got {sorted(spec)}",
                    hint="e.g. {search: {low: 0.2, high: 0.6, step: 0.1}}",
                )
            lo, hi, step = spec["low"], spec["high"], spec.get("step")
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (lo, hi)) or not lo < hi:
                raise ConfigError(f"{path}: a range needs numbers with low < high, got {lo!r}..{hi!r}", hint="e.g. {low: 0.2, high: 0.6}")
            if step is not None and (not isinstance(step, (int, float)) or isinstance(step, bool) or step <= 0):
                raise ConfigError(f"{path}: step must be a positive number, got {step!r}", hint="e.g. step: 0.1")
            if spec.get("log") and (lo <= 0 or step is not None):
                raise ConfigError(f"{path}: a log range needs low > 0 and no step", hint="drop `log` or `step`")
            integer = all(isinstance(x, int) for x in (lo, hi)) and (step is None or isinstance(step, int))
            out.append(Param(path, low=lo, high=hi, step=step, log=bool(spec.get("log")), integer=integer, when=when))
            return
        raise ConfigError(
            f"{path}: `search:` takes a list of choices or a range {{low, high}}, got {type(spec).__name__}", hint="e.g. {search: [minmax, entropy]}"
        )
    if isinstance(node, dict):
        if MARK in node and len(node) > 1 and path.count("/") == 0:
            raise ConfigError(
                f"{path}: `search:` must stand alone in a pass entry (it lists whole alternatives)", hint="mark an option instead: ratio: {search: [0.3, 0.5]}"
            )
        for k, v in node.items():
            _collect(v, f"{path}/{k}", when, out)
    elif isinstance(node, list):
        for j, v in enumerate(node):
            _collect(v, f"{path}[{j}]", when, out)


def parse_space(passes: Any) -> Space:
    """The parameters marked in a recipe's ``passes:`` (raw YAML), checked; a recipe without marks is an error."""
    if passes == "auto":
        raise ConfigError("`passes: auto` is optimize's preset, not a search space", hint="run `edgesmith optimize`, or mark choices with {search: [...]}")
    if not isinstance(passes, list):
        raise ConfigError("the recipe's passes: must be a list to search over", hint="see `edgesmith search --help` for the syntax")
    out: list[Param] = []
    for i, spec in enumerate(passes):
        en = spec.get("enabled") if isinstance(spec, dict) else None
        if en is not None and not (
            isinstance(en, bool) or (_is_mark(en) and isinstance(en[MARK], list) and en[MARK] and all(isinstance(v, bool) for v in en[MARK]))
        ):
            raise ConfigError(f"passes[{i}]/enabled must be true, false or {{search: [true, false]}}", hint="e.g. enabled: {search: [true, false]}")
        if _is_mark(en):  # the pass is optional: its other choices apply only when it runs
            _collect(en, f"passes[{i}]/enabled", (), out)
            rest = {k: v for k, v in spec.items() if k != "enabled"}
            _collect(rest, f"passes[{i}]", ((f"passes[{i}]/enabled", True),), out)
        else:
            _collect(spec, f"passes[{i}]", (), out)
    if not out:
        raise ConfigError(
            "nothing to search: the recipe marks no choice",
            hint="mark a value with {search: [...]}, e.g. `ratio: {search: [0.3, 0.5]}` under a pass (or run `edgesmith optimize`)",
        )
    return Space(copy.deepcopy(passes), out)


def check_choices(space: Space, validate: Any) -> None:
    """Every choice of every parameter, each in turn with the others at their first value, validated as
    a concrete pass list by ``validate(passes)`` — a bad value fails before any trial runs."""
    base: dict[str, Any] = {}
    for p in space.params:
        if all(base.get(dep) == label for dep, label in p.when):
            base[p.name] = p.choices[0] if p.choices is not None else p.low
    seen = set()
    for p in space.params:
        options = list(p.choices) if p.choices is not None else [p.low, p.high]
        for v in options:
            values = {**base, p.name: v}
            # an alternative's own parameters take their first value when it is picked
            for q in space.params:
                if q.name not in values and all(values.get(dep) == label for dep, label in q.when):
                    values[q.name] = q.choices[0] if q.choices is not None else q.low
            values = {k: v2 for k, v2 in values.items() if all(values.get(d) == lab for d, lab in _param(space, k).when)}
            key = json.dumps(values, sort_keys=True, default=str)
            if key in seen:
                continue
            seen.add(key)
            try:
                validate(space.concrete(values))
            except ConfigError as exc:
                raise ConfigError(f"choice {p.name.split('/', 1)[-1]}={v!r} is not valid: {exc.message}", hint=exc.hint) from None


def _param(space: Space, name: str) -> Param:
    return next(p for p in space.params if p.name == name)
