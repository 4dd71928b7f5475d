"""Budgets judged against measured metrics: one verdict per budget of a profile.

Also what searches need to rank candidates that miss: how far outside a budget one is (``shortfall``)
and a one-line description of the gap (``gap_text``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from edgesmith.environment import host_arch, missing_cpu_features
from edgesmith.profiles.schema import BUILTIN_METRICS, LATENCY_METRICS, Profile

# metrics that are not accuracy: what tune/optimize leave out when they judge accuracy alone
NON_ACCURACY_PREFIXES = ("latency_", "speedup_vs_fp32", "artifact_mb", "peak_memory_mb")


@dataclass
class Verdict:
    metric: str
    value: float | None
    reference: float | None
    goal: str
    budget: float
    status: str  # pass | fail | inconclusive (timed metrics whose interval straddles the budget) | n/a
    detail: str = ""
    batch: int | None = None
    estimate: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timed(metric: str) -> bool:
    return metric.startswith(LATENCY_METRICS + ("speedup_vs_fp32",))


NOT_COMPUTED = {
    "top1": "not computed: the evaluation data has no labels (give labelled data — class sub-folders, a label column, npz key "
    "`labels` — or judge by decision_agreement, the share of the float model's top-1 answers kept)",
    "decision_agreement": "not computed: the model's outputs are not class scores ([N, C] logits with C >= 5, or probabilities), so there is "
    "no top-1 decision to compare; output_fidelity (R²) judges these outputs — drop this budget from the profile for such models",
}


def _judge_one(g: Any, value: float | None, ref: float | None, v: Verdict) -> None:
    if value is None:
        v.detail = NOT_COMPUTED.get(g.metric, "not computed in this run" + (" (latency was not timed)" if _timed(g.metric) else ""))
    elif g.goal in ("max-degradation", "max-relative-degradation"):
        if ref is None:
            v.detail = "no float reference to compare with"
            return
        drop = ref - value
        if g.goal == "max-relative-degradation":
            drop = 100.0 * drop / abs(ref) if ref else 0.0
        v.status = "pass" if drop <= g.value + 1e-9 else "fail"
        v.detail = f"drop {drop:.3g}{'%' if g.goal == 'max-relative-degradation' else ' pt'}"
    else:
        ok = value >= g.value - 1e-9 if g.goal == "min" else value <= g.value + 1e-9  # NOTE: float noise is no failure
        v.status = "pass" if ok else "fail"
        v.detail = f"{'>=' if g.goal == 'min' else '<='} {g.value:g}"


def _not_the_target(profile: Profile) -> str:
    """Why a latency measured here says nothing about the target ("" when this host is such a machine):
    another architecture, or a CPU without a feature the profile's kernels need (VNNI on an AVX2 runner)."""
    if host_arch() != profile.hardware.arch:
        return f"measured on {host_arch()}, target is {profile.hardware.arch}: not judged"
    missing = missing_cpu_features(profile.hardware.isa)
    if missing:
        return f"this host lacks {', '.join(missing)}, which the target's profile requires: latency not judged"
    return ""


def judge(profile: Profile, metrics: dict[str, Any], reference: dict[str, Any], latency: dict | None = None) -> list[Verdict]:
    """One verdict per budget. ``metrics``/``reference`` map metric name -> value; latency and
    speed-up metrics are keyed ``name@batch``. ``latency`` (what evaluate.time_against_float returns):
    a batch timed while the machine was busy judges nothing on time (inconclusive, with the reason)."""
    verdicts = []
    why_not = _not_the_target(profile)
    for g in profile.budgets:
        key = f"{g.metric}@{g.batch or profile.batch_sizes[0]}" if _timed(g.metric) else g.metric
        value, ref = metrics.get(key), reference.get(key)
        v = Verdict(g.metric, value, ref, g.goal, g.value, "n/a", batch=g.batch, estimate=profile.estimated)
        if _timed(key):
            v.batch = g.batch or profile.batch_sizes[0]
            if why_not:
                v.detail = why_not
                verdicts.append(v)
                continue
        _judge_one(g, value, ref, v)
        if value is None and g.metric not in BUILTIN_METRICS:  # NOTE: a misspelt budget must not pass by being absent
            own = sorted(k for k in metrics if k.partition("@")[0] not in BUILTIN_METRICS and "_low@" not in k and "_high@" not in k)
            v.status, v.detail = "fail", f"no metric named {g.metric!r} was computed (the metric function gave: {', '.join(own) or 'none'})"
        if _timed(key) and v.status in ("pass", "fail"):
            _judge_interval(g, metrics, key, v)
            busy = busy_machine(latency, v.batch)
            if busy:
                v.status, v.detail = "inconclusive", f"not judged: the machine was busy while timing ({busy}); re-run on a quiet machine"
        verdicts.append(v)
    return verdicts


def busy_machine(latency: dict | None, batch: int | None) -> str:
    """Why the timing of ``batch`` cannot be trusted ("" when the machine was free): runtime.contention's record."""
    rec = ((latency or {}).get("compressed") or {}).get(batch) or ((latency or {}).get("compressed") or {}).get(str(batch)) or {}
    machine = rec.get("machine") or {}
    return "; ".join(machine.get("reasons") or ["busy"]) if machine.get("busy") else ""


def _judge_interval(g: Any, metrics: dict[str, Any], key: str, v: Verdict) -> None:
    """A timed metric with a measured interval: pass only when the whole interval is within the budget,
    fail only when it is wholly outside; "inconclusive" when the measurement cannot tell."""
    name, _, batch = key.partition("@")
    low, high = metrics.get(f"{name}_low@{batch}"), metrics.get(f"{name}_high@{batch}")
    if low is None or high is None or g.goal not in ("min", "max"):
        return
    within = low >= g.value if g.goal == "min" else high <= g.value
    outside = high < g.value if g.goal == "min" else low > g.value
    v.status = "pass" if within else "fail" if outside else "inconclusive"
    v.detail = f"{'>=' if g.goal == 'min' else '<='} {g.value:g}; 95% interval {low:.3g}-{high:.3g}" + (
        ": the measurement cannot tell (not a failure)" if v.status == "inconclusive" else ""
    )


INCONCLUSIVE_POLICIES = ("fail", "warn", "pass")


def undecided(policy: str) -> str:
    """The verdict an undecided measurement gets under the policy: fail, inconclusive (``warn``) or pass."""
    return {"fail": "fail", "warn": "inconclusive", "pass": "pass"}[policy]


def overall(verdicts: Sequence[Verdict], inconclusive: str = "warn") -> str:
    """fail when a budget surely fails; a budget the measurement could not decide makes the verdict what the
    policy says: fail, inconclusive (``warn``: reported, not a failure, never a PASS) or pass."""
    if any(v.status == "fail" for v in verdicts):
        return "fail"
    if any(v.status == "inconclusive" for v in verdicts):
        return undecided(inconclusive)
    return "pass"


def combine(verdicts: Sequence[str]) -> str:
    """One verdict of several (targets, runs): the worst of fail, inconclusive, pass."""
    for worst in ("fail", "inconclusive"):
        if worst in verdicts:
            return worst
    return "pass"


def accuracy_profile(profile: Any) -> Any:
    """The profile with only its accuracy budgets (what tune and optimize search against)."""
    return profile.model_copy(update={"budgets": [g for g in profile.budgets if not g.metric.startswith(NON_ACCURACY_PREFIXES)]})


def gap_text(v: Verdict) -> str:
    if v.goal.endswith("degradation"):
        return f"{v.metric} {v.detail}, over the allowed {v.budget:g}"
    return f"{v.metric} {v.value:.6g} {'below' if v.goal == 'min' else 'above'} {v.budget:g}"


def shortfall(v: Verdict) -> float:
    """How far outside its budget a failing verdict is, relative to the budget (0 when within)."""
    if v.goal.endswith("degradation"):
        drop = (v.reference or 0.0) - (v.value or 0.0)
        return max(drop - v.budget, 0.0) / max(v.budget, 1e-3)
    scale = (
        max(abs(v.budget), 1e-9)
        if v.goal == "max"
        else max(abs(1.0 - v.budget) if v.metric in ("cosine", "output_fidelity", "decision_agreement") else abs(v.budget), 1e-9)
    )
    return abs((v.value or 0.0) - v.budget) / scale


def pick_fastest(candidates: Sequence[Any], speed: Callable[[Any], Any], interval: Callable[[Any], Any], fidelity: Callable[[Any], Any]) -> Any:
    """The candidate to keep among those within budget: the fastest, unless its speed cannot be told apart
    from others' (their 95% intervals overlap the fastest's) — then the one among them with the best fidelity
    (a hair of speed the measurement cannot confirm does not buy a clearly worse model). ``speed``,
    ``interval`` (-> (low, high) or None) and ``fidelity`` are functions of a candidate. None when empty."""
    if not candidates:
        return None
    lead = max(candidates, key=lambda c: (speed(c), fidelity(c)))
    lo, hi = interval(lead) or (speed(lead), speed(lead))

    def tied(c: Any) -> bool:
        c_lo, c_hi = interval(c) or (speed(c), speed(c))
        return bool(c_hi >= lo and c_lo <= hi)

    return max((c for c in candidates if tied(c)), key=lambda c: (fidelity(c), speed(c)))
