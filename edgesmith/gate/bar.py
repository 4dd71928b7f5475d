"""The gate's bar: what a baseline freezes so a candidate cannot move it.

A baseline records, per target, every rule the gate will judge by — each gated measure with its
direction (higher or lower is better), its tolerance *with a unit* (absolute points in the measure's
own unit, or percent of the baseline's value) and whether a run may lack it — and the whole profile
the run was judged under, the evaluation data's content hash and count, and the metric definition.
``check`` judges with this bar, never with the candidate's: the candidate's own bar is compared with
it, and every difference is a finding that fails unless the user accepts it explicitly.

Tolerances come, first match wins, from: ``baseline save --metric-rule``, the profile's
``gate.metrics``, the profile's degradation budget for the metric, ``gate.accuracy_drop``, the table of
known metrics below. A task metric none of these covers is refused at ``baseline save``: the gate
cannot guess whether a higher ``my_score`` is better, nor what 0.5 of it means.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import ValidationError

from edgesmith.errors import InputError
from edgesmith.profiles.schema import TOLERANCE_FORMAT, MetricRule, Profile, parse_tolerance

# known task metrics: which way is better, and a default tolerance on the scale they are usually reported in
# (percent-scaled ones in points; metrics reported in [0, 1] or in unbounded units relative to their value)
KNOWN_METRICS: dict[str, tuple[str, str]] = {
    **{m: ("higher", "0.5pt") for m in ("top1", "top5", "accuracy", "pixel_acc", "box_f1", "box_f1_vs_original", "bleu", "chrf", "exact_match")},
    **{m: ("lower", "0.5pt") for m in ("cer", "wer")},
    **{m: ("higher", "1%") for m in ("miou", "map", "map50", "map75", "f1", "auc", "precision", "recall", "rouge", "rougel", "psnr", "ssim")},
    **{m: ("lower", "1%") for m in ("perplexity", "loss", "mse", "mae", "rmse", "nll")},
}
# agreement with the float model: always higher-is-better, absolute tolerances from the profile's gate section
FIDELITY_RULES = {"cosine": "cosine_drop", "output_fidelity": "fidelity_drop", "decision_agreement": "decision_drop"}
NOT_TASK = ("latency_", "speedup_vs_fp32", "peak_memory_mb", "artifact_mb", "sqnr_db") + tuple(FIDELITY_RULES)
# profile fields that describe, not judge: a changed description is not a changed bar
DESCRIPTIVE = ("description", "notes")


@dataclass(frozen=True)
class Rule:
    metric: str
    direction: str  # higher | lower
    tolerance: float
    unit: str  # abs | rel%
    optional: bool = False
    source: str = ""

    def allowed(self, base: float) -> float:
        """How far the metric may move the wrong way from ``base``."""
        return self.tolerance if self.unit == "abs" else abs(base) * self.tolerance / 100.0

    def worse_by(self, base: float, now: float) -> float:
        return base - now if self.direction == "higher" else now - base

    def text(self) -> str:
        word = "drop" if self.direction == "higher" else "rise"
        return f"{word} <= {self.tolerance:g}{' pt' if self.unit == 'abs' else '%'}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_rule_option(text: str) -> tuple[str, MetricRule]:
    """``NAME=higher:0.5pt`` (or ``lower:1%``, ``...:optional``) from the command line."""
    name, sep, rest = text.partition("=")
    parts = rest.split(":")
    if not sep or not name.strip() or len(parts) not in (2, 3) or parts[0] not in ("higher", "lower") or parts[2:] not in ([], ["optional"]):
        raise InputError(
            f"--metric-rule {text!r} is not NAME=higher|lower:TOLERANCE", hint=f"e.g. --metric-rule bleu=higher:0.5pt; tolerance {TOLERANCE_FORMAT}"
        )
    try:
        return name.strip(), MetricRule(direction=parts[0], tolerance=parts[1], optional=parts[2:] == ["optional"])  # type: ignore[arg-type]
    except ValidationError as exc:
        raise InputError(f"--metric-rule {text!r}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}", hint=f"tolerance {TOLERANCE_FORMAT}") from exc


def task_rule(metric: str, profile: Any, declared: dict[str, MetricRule] | None = None) -> Rule | None:
    """The rule for a task metric, or None when nothing declares one."""
    for source, rules in (("command line", declared or {}), ("profile gate.metrics", profile.gate.metrics)):
        if metric in rules:
            r = rules[metric]
            value, unit = parse_tolerance(r.tolerance)
            return Rule(metric, r.direction, value, unit, r.optional, source)
    known = KNOWN_METRICS.get(metric.lower())
    if known is None or known[0] == "higher":
        for g in profile.budgets:
            if g.metric == metric and g.goal in ("max-degradation", "max-relative-degradation"):
                return Rule(metric, "higher", g.value, "abs" if g.goal == "max-degradation" else "rel%", False, f"profile budget {g.goal}")
    if known is not None:
        if known[0] == "higher" and profile.gate.accuracy_drop is not None and parse_tolerance(known[1])[1] == "abs":
            return Rule(metric, "higher", profile.gate.accuracy_drop, "abs", False, "profile gate.accuracy_drop")
        value, unit = parse_tolerance(known[1])
        return Rule(metric, known[0], value, unit, False, "built-in default for this metric")
    return None


def rules_for(metrics: dict[str, Any], profile: Any, declared: dict[str, MetricRule] | None = None, where: str = "", strict: bool = True) -> dict[str, Rule]:
    """Every gated quality measure of a run's target, with its rule; refuses a task metric without one
    (``strict``), else leaves it out."""
    out: dict[str, Rule] = {}
    for metric in sorted(metrics):
        if metric.startswith(NOT_TASK):
            continue
        rule = task_rule(metric, profile, declared)
        if rule is None:
            if not strict:
                continue
            raise InputError(
                f"{where}metric {metric!r} has no declared direction or tolerance: the gate cannot tell whether higher is better, nor what a change of 1 means",
                hint=f"declare it: --metric-rule {metric}=higher:0.5pt (or lower:1%), or in the profile's gate.metrics",
            )
        out[metric] = rule
    for metric, field in FIDELITY_RULES.items():
        if metric in metrics:
            out[metric] = Rule(metric, "higher", getattr(profile.gate, field), "abs", metric in profile.gate.optional, f"profile gate.{field}")
    return out


def _flat(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def freeze(target: dict[str, Any], manifest: dict[str, Any], declared: dict[str, MetricRule] | None = None, strict: bool = True) -> dict[str, Any]:
    """The bar of one target of a run, as the baseline stores it."""
    profile = Profile.model_validate(target["profile"])
    judged = {k: v for k, v in profile.model_dump(mode="json").items() if k not in DESCRIPTIVE}
    evaluation = (manifest.get("data") or {}).get("evaluation") or {}
    rules = rules_for(target.get("metrics") or {}, profile, declared, f"target {profile.name}: ", strict)
    where = {"measured_on": manifest["measured_on"]} if manifest.get("measured_on") else {}  # a device's measures, not this machine's
    return {
        **where,
        "profile": judged,
        "profile_sha256": hashlib.sha256(json.dumps(judged, sort_keys=True).encode()).hexdigest(),
        "data": {k: evaluation.get(k) for k in ("name", "samples", "sha256", "labels")},
        "metric": (manifest.get("recipe") or {}).get("metric"),
        "rules": {m: r.as_dict() for m, r in rules.items()},
        "declared": {m: r.model_dump() for m, r in (declared or {}).items()},
    }


def rules_of(bar: dict[str, Any]) -> dict[str, Rule]:
    try:
        return {m: Rule(**r) for m, r in (bar.get("rules") or {}).items()}
    except TypeError as exc:
        raise InputError(f"the baseline's rules are damaged ({exc})", hint="save the baseline again") from exc


def differences(base: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What the candidate's bar changes against the baseline's, one line each."""
    out = []
    for part in ("profile", "data"):
        a, b = _flat(base.get(part) or {}, part), _flat(now.get(part) or {}, part)
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                out.append(f"{key}: {_short(a.get(key))} -> {_short(b.get(key))}")
    if base.get("measured_on") != now.get("measured_on"):
        out.append(f"measured on: {base.get('measured_on') or 'the build machine'} -> {now.get('measured_on') or 'the build machine'}")
    if base.get("metric") != now.get("metric"):
        out.append(f"metric definition: {base.get('metric')!r} -> {now.get('metric')!r}")
    base_rules, now_rules = base.get("rules") or {}, now.get("rules") or {}
    for m in sorted(set(base_rules) | set(now_rules)):
        ra, rb = base_rules.get(m), now_rules.get(m)
        if ra and rb and (ra["direction"], ra["tolerance"], ra["unit"], ra["optional"]) != (rb["direction"], rb["tolerance"], rb["unit"], rb["optional"]):
            out.append(f"rule for {m}: {Rule(**ra).text()} -> {Rule(**rb).text()}")
    return out


def _short(v: Any) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= 120 else text[:117] + "..."
