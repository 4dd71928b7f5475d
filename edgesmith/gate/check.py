"""``edgesmith check RUN_DIR --baseline baseline.json``: judge a new run against a stored baseline.

The bar is the baseline's (``bar.py``): its profile, rules, data and batches — the candidate's own
profile is only compared with it, and any difference fails unless accepted (``--accept-bar-change``).
Per target, one finding per gated measure:
- task metrics move the wrong way (each rule's direction) by at most its tolerance; top-1 with per-sample
  answers is decided by a paired test — fail when the drop exceeds the tolerance with the stated
  confidence, pass when it surely does not, inconclusive between;
- fidelity to the float model (cosine, output fidelity / R², decision agreement) may drop by the
  profile's gate tolerances;
- latency: the baseline artifact and the candidate are re-timed interleaved, here and now (once more,
  with twice the rounds, when the first timing cannot tell), and only a ratio whose whole confidence
  interval lies beyond the tolerance fails; without the baseline artifact, the recorded distributions
  are compared instead (and the finding says so);
- artifact size and peak memory may grow by their tolerances.
A measure the bar names and the run lacks is ``missing`` (a failure) unless the bar marks it optional.
What cannot be decided is ``inconclusive``, and one policy (``--inconclusive fail|warn|pass``) says
what that means for the verdict.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.errors import InputError
from edgesmith.evaluate.judge import undecided
from edgesmith.gate.bar import FIDELITY_RULES, Rule, differences, freeze, rules_of
from edgesmith.gate.baseline import baseline_artifact, identity, identity_differences, load_baseline, load_run
from edgesmith.gate.history import drift_findings
from edgesmith.gate.noise import accuracy_noise, blocks, latency_status, paired_drop, relative_ratio
from edgesmith.metrics import unpack_bits
from edgesmith.outputs import inside
from edgesmith.profiles.schema import MetricRule, Profile
from edgesmith.progress import Reporter
from edgesmith.report import STATUS_RANK  # worst first: the order findings are listed in, in every gate view
from edgesmith.runtime import Artifact
from edgesmith.runtime.bench import artifact_for, make_feeds
from edgesmith.runtime.compare import bootstrap_ratio, compare

POLICIES = ("fail", "warn", "pass")  # what an inconclusive finding makes of the verdict; "warn" by default


@dataclass
class Finding:
    target: str
    metric: str
    kind: str  # accuracy | fidelity | latency | size | memory | target
    baseline: float | None
    now: float | None
    delta: str
    budget: str
    status: str  # pass | fail | inconclusive | info | new | missing | accepted
    detail: str = ""
    excess: float = 0.0  # past the tolerance, as a fraction of it (orders findings of one status)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GateReport:
    run_dir: str
    baseline_path: str
    verdict: str = "pass"  # pass | fail | inconclusive (an inconclusive finding under the "warn" policy)
    strict: bool = False  # the policy is "fail"
    policy: str = "warn"
    bar_changes: list[str] = field(
        default_factory=list
    )  # differences of the candidate's bar that were accepted (--accept-bar-change, or set on the command line)
    history: list[dict[str, Any]] = field(default_factory=list)  # per accepted baseline: name, created, per target the gated metrics
    findings: list[Finding] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    forced_over: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # per target and batch: {"baseline": [...ms], "now": [...ms], "how": "..."} for the report's plots
    latency_samples: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # the two documents compared, kept for the writers (not part of as_dict)
    baseline: dict[str, Any] = field(default_factory=dict, repr=False)
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)

    def sorted_findings(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: (STATUS_RANK.get(f.status, 9), -f.excess, f.target, f.metric))

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.findings)

    def headline(self) -> str:
        parts = [f"{self.count(s)} {s}" for s in ("fail", "missing", "inconclusive", "accepted", "new", "pass") if self.count(s)]
        return f"{self.verdict.upper()}: " + ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["baseline"], d["manifest"]
        d["findings"] = [f.as_dict() for f in self.sorted_findings()]
        return d


def _bar_profile(bar: dict[str, Any], latency_tolerance: float | None, report: GateReport, name: str) -> Any:
    """The baseline's profile, with the tolerances set on the command line (recorded as accepted changes)."""
    profile = Profile.model_validate({"name": name, **bar["profile"]})
    if latency_tolerance is not None:
        report.bar_changes.append(f"{name}: latency tolerance {profile.gate.latency_ratio:g}x -> {1.0 + latency_tolerance:g}x (set on the command line)")
        profile = profile.model_copy(update={"gate": profile.gate.model_copy(update={"latency_ratio": 1.0 + latency_tolerance})})
    return profile


def _rules(bar: dict[str, Any], accuracy_tolerance: float | None, report: GateReport, name: str) -> dict[str, Rule]:
    rules = rules_of(bar)
    if accuracy_tolerance is None:
        return rules
    out = {}
    for m, r in rules.items():
        if m in FIDELITY_RULES or r.unit != "abs":
            out[m] = r
            continue
        out[m] = Rule(m, r.direction, accuracy_tolerance, "abs", r.optional, "command line")
        report.bar_changes.append(f"{name}: {m} {r.text()} -> {out[m].text()} (set on the command line)")
    return out


def _changes(baseline: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """What differs between the runs besides their identity: the things a pull request changes."""
    out = []
    base_pc, now_pc = baseline.get("pass_configs") or {}, manifest.get("pass_configs") or {}
    for name in sorted(set(base_pc) | set(now_pc)):
        if name not in now_pc:
            out.append(f"pass {name} removed")
        elif name not in base_pc:
            out.append(f"pass {name} added")
        else:
            for k in sorted(set(base_pc[name]) | set(now_pc[name])):
                if base_pc[name].get(k) != now_pc[name].get(k):
                    out.append(f"pass {name}: {k} {base_pc[name].get(k)!r} -> {now_pc[name].get(k)!r}")
    for ref, digest in (manifest.get("inputs") or {}).items():
        old = (baseline.get("inputs") or {}).get(ref)
        if old and old != digest:
            out.append(f"input file {ref} changed (sha256 {old[:12]} -> {digest[:12]})")
    bv, nv = baseline.get("versions") or {}, manifest.get("versions") or {}
    out += [f"{lib} {bv[lib]} -> {nv[lib]}" for lib in sorted(set(bv) & set(nv)) if bv[lib] != nv[lib]]
    if (baseline.get("host") or {}).get("cpu") != (manifest.get("host") or {}).get("cpu"):
        out.append(f"host CPU {(baseline.get('host') or {}).get('cpu')!r} -> {(manifest.get('host') or {}).get('cpu')!r}")
    return out


def check_run(
    run_dir: Path,
    baseline_path: Path,
    *,
    force: bool = False,
    remeasure: bool = True,
    strict: bool = False,
    inconclusive: str | None = None,
    accept_bar_change: bool = False,
    history: int = 0,
    rounds: int = 20,
    per_round: int = 10,
    latency_tolerance: float | None = None,
    accuracy_tolerance: float | None = None,
    reporter: Any = None,
    device: str | None = None,
    pair_timer: Any = None,
) -> GateReport:
    """``device``: judge the run as that device measured it (recorded by ``validate RUN --on``), against a
    baseline saved the same way; ``pair_timer``: who re-times baseline against candidate (default: here)."""

    rep = reporter or Reporter()
    policy = inconclusive or ("fail" if strict else "warn")
    if policy not in POLICIES:
        raise InputError(f"--inconclusive {policy!r} is not one of {', '.join(POLICIES)}", hint="fail (count it as a regression), warn (the default), pass")
    baseline = load_baseline(baseline_path)
    manifest = load_run(run_dir, device)
    report = GateReport(str(run_dir), str(baseline_path), strict=policy == "fail", policy=policy, baseline=baseline, manifest=manifest)
    diffs = identity_differences(baseline.get("identity") or {}, identity(manifest))
    if diffs and not force:
        raise InputError(
            f"baseline {baseline_path.name} comes from another model or recipe: {'; '.join(diffs)}",
            hint="save a baseline from this recipe, or pass --force to compare anyway",
        )
    report.forced_over = diffs
    report.changes = _changes(baseline, manifest)
    same_cpu = (baseline.get("host") or {}).get("cpu") == (manifest.get("host") or {}).get("cpu")
    for name in sorted(set(baseline["targets"]) | set(manifest["targets"])):
        if name not in manifest["targets"]:
            report.findings.append(Finding(name, "target", "target", None, None, "—", "present", "missing", "the baseline has this target; this run does not"))
            continue
        if name not in baseline["targets"]:
            report.findings.append(
                Finding(name, "target", "target", None, None, "—", "present", "new", "not in the baseline, so not gated: save a new baseline to gate it")
            )
            continue
        target, base_t = manifest["targets"][name], baseline["targets"][name]
        bar = base_t["bar"]
        profile = _bar_profile(bar, latency_tolerance, report, name)
        rules = _rules(bar, accuracy_tolerance, report, name)
        report.findings += _bar_findings(name, bar, target, manifest, accept_bar_change, report)
        report.findings += _accuracy(name, base_t, target, rules, profile, manifest)
        report.findings += _size_and_memory(name, base_t, target, profile)
        with rep.step(f"[{name}] latency against the baseline"):
            report.findings += _latency(
                name, base_t, target, profile, baseline, baseline_path, run_dir, manifest, remeasure, same_cpu, rounds, per_round, report, pair_timer
            )
    if history:
        report.findings += [Finding(**d) for d in drift_findings(baseline_path, history, manifest, report)]
    report.verdict = decide(report)
    return report


def decide(report: GateReport) -> str:
    """fail on a regression or a missing measure; an inconclusive finding per the policy."""
    if report.count("fail") + report.count("missing"):
        return "fail"
    if report.count("inconclusive"):
        return undecided(report.policy)
    return "pass"


def _bar_findings(name: str, bar: dict, target: dict, manifest: dict, accept: bool, report: GateReport) -> list[Finding]:
    """The candidate's bar against the baseline's: each difference fails unless accepted."""
    declared = {m: MetricRule.model_validate(r) for m, r in (bar.get("declared") or {}).items()}
    now = freeze(target, manifest, declared, strict=False)
    out = []
    for diff in differences(bar, now):
        if accept:
            report.bar_changes.append(f"{name}: {diff} (accepted with --accept-bar-change)")
        out.append(
            Finding(
                name,
                "bar",
                "bar",
                None,
                None,
                "changed",
                "the baseline's",
                "accepted" if accept else "fail",
                f"{diff}: judged by the baseline's bar"
                + ("; accepted with --accept-bar-change" if accept else " — the candidate changed the bar; pass --accept-bar-change if this is intended"),
            )
        )
    return out


def _accuracy(name: str, base_t: dict, target: dict, rules: dict[str, Rule], profile: Any, manifest: dict) -> list[Finding]:

    out = []
    base_m, now_m = base_t["metrics"], target["metrics"]
    n = ((manifest.get("data") or {}).get("evaluation") or {}).get("samples")
    for metric, rule in sorted(rules.items()):
        b, v = base_m.get(metric), now_m.get(metric)
        kind = "fidelity" if metric in FIDELITY_RULES else "accuracy"
        if b is None:
            continue
        if v is None:
            status = "info" if rule.optional else "missing"
            why = "not computed in this run" + (" (optional in the bar)" if rule.optional else ": the bar gates it, so its absence fails")
            out.append(Finding(name, metric, kind, b, None, "—", rule.text(), status, why))
            continue
        worse, allowed = rule.worse_by(b, v), rule.allowed(b)
        status = "fail" if worse > allowed + 1e-9 else "pass"
        unit = " pt" if kind == "accuracy" else ""
        detail = "unchanged" if worse == 0 else f"{'worse' if worse > 0 else 'better'} by {abs(worse):.3g}{unit} (allowed {allowed:.3g}{unit}, {rule.source})"
        bits = _per_sample(base_t, target, n) if metric == "top1" else None
        if bits is not None and worse != 0:
            status, text = paired_drop(bits[0], bits[1], allowed, profile.gate.confidence)
            detail += f"; {text}"
        elif metric == "top1" and n and worse != 0:
            detail += "; " + accuracy_noise(b, v, n, confidence=profile.gate.confidence)[1] + " (no per-sample answers: decided on the point estimate)"
        out.append(Finding(name, metric, kind, b, v, f"{v - b:+.3g}{unit}", rule.text(), status, detail, excess=(worse - allowed) / max(allowed, 1e-9)))
    if "sqnr_db" in base_m and "sqnr_db" in now_m:
        b, v = base_m["sqnr_db"], now_m["sqnr_db"]
        delta = f"{v - b:+.3g} dB" if abs(b) != float("inf") and abs(v) != float("inf") else "—"
        out.append(Finding(name, "sqnr_db", "fidelity", b, v, delta, "—", "info", "reported, not gated"))
    return out


def _per_sample(base_t: dict, target: dict, n: int | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-sample top-1 answers of both runs, when recorded and consistent with the runs' top-1 (answers that
    do not add up to the metric are not evidence: the point estimate decides then)."""
    bs, ns = base_t.get("samples") or {}, target.get("samples") or {}
    if not (n and bs.get("n") == ns.get("n") == n and bs.get("top1_correct") and ns.get("top1_correct")):
        return None
    bits = unpack_bits(bs["top1_correct"], n), unpack_bits(ns["top1_correct"], n)
    for b, t in zip(bits, (base_t, target)):
        if abs(100.0 * float(np.mean(b)) - float(t["metrics"]["top1"])) > 1e-6:
            return None
    return bits


def _size_and_memory(name: str, base_t: dict, target: dict, profile: Any) -> list[Finding]:
    out = []
    for metric in ("artifact_mb", "peak_memory_mb"):
        b, v = base_t["metrics"].get(metric), target["metrics"].get(metric)
        if b and v is None:
            optional = metric in profile.gate.optional
            out.append(
                Finding(
                    name,
                    metric,
                    "size" if metric == "artifact_mb" else "memory",
                    b,
                    None,
                    "—",
                    "recorded",
                    "info" if optional else "missing",
                    "not measured in this run"
                    + (
                        " (optional in the bar)"
                        if optional
                        else ": the baseline has it, so its absence fails (mark it optional in the profile's gate.optional)"
                    ),
                )
            )
    b, v = base_t["metrics"].get("artifact_mb"), target["metrics"].get("artifact_mb")
    if b and v is not None:
        r, tol = v / b, profile.gate.size_ratio
        out.append(
            Finding(
                name,
                "artifact_mb",
                "size",
                b,
                v,
                f"{r:.3f}x",
                f"<= {tol:g}x",
                "fail" if r > tol else "pass",
                f"compiled artifact {b:.3f} MB -> {v:.3f} MB",
                excess=(r - tol) / (tol - 1 or 1e-9),
            )
        )
    b, v = base_t["metrics"].get("peak_memory_mb"), target["metrics"].get("peak_memory_mb")
    if b and v is not None:
        limit = b * profile.gate.memory_ratio + profile.gate.memory_slack_mb
        out.append(
            Finding(
                name,
                "peak_memory_mb",
                "memory",
                b,
                v,
                f"{v - b:+.1f} MB",
                f"<= {profile.gate.memory_ratio:g}x + {profile.gate.memory_slack_mb:g} MB",
                "fail" if v > limit else "pass",
                f"peak RSS of the runtime process, limit {limit:.1f} MB",
                excess=(v - limit) / max(limit - b, 1e-9),
            )
        )
    return out


def _latency(
    name: str,
    base_t: dict,
    target: dict,
    profile: Any,
    baseline: dict,
    baseline_path: Path,
    run_dir: Path,
    manifest: dict,
    remeasure: bool,
    same_cpu: bool,
    rounds: int,
    per_round: int,
    report: GateReport,
    timer: Any = None,
) -> list[Finding]:

    out: list[Finding] = []
    tol, conf = profile.gate.latency_ratio, profile.gate.confidence
    base_art, where = baseline_artifact(baseline, baseline_path, name) if remeasure else (None, "re-measuring was turned off (--no-remeasure)")
    if base_art is not None and base_t["artifact"]["backend"] != profile.backend:
        base_art, where = None, f"the baseline artifact is for {base_t['artifact']['backend']}, this target runs {profile.backend}"
    measured = None
    if base_art is not None:
        try:
            measured = _remeasure(base_art, base_t, target, profile, run_dir, rounds, per_round, conf, timer=timer)
            # NOTE: when a quiet timing cannot tell, measure more (once, twice the rounds) before calling it inconclusive
            unsure = [b for b, c in measured.items() if not c.busy and latency_status(c.ratio, c.low, c.high, tol) == "inconclusive"]
            if unsure:
                again = _remeasure(base_art, base_t, target, profile, run_dir, 2 * rounds, per_round, conf, unsure, timer=timer)
                measured.update(again)
        except Exception as exc:  # noqa: BLE001 - a failed re-measurement falls back to the record, and says why
            where = f"re-measuring failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
    for batch in profile.batch_sizes:
        key = str(batch)
        label = f"latency p50 (batch {batch})"
        b_stats = (base_t.get("latency") or {}).get("compressed", {}).get(key) or {}
        n_stats = (target.get("latency") or {}).get("compressed", {}).get(key) or {}
        if measured is not None:
            cmp_ = measured[batch]
            status = "inconclusive" if cmp_.busy else latency_status(cmp_.ratio, cmp_.low, cmp_.high, tol)
            detail = (
                f"baseline artifact ({where}) and this run's re-timed interleaved {'on device ' + str(manifest.get('measured_on')) if timer else 'here'}: now/baseline {cmp_.ratio:.3f} "
                f"({conf:.0%} CI {cmp_.low:.3f}-{cmp_.high:.3f}, {cmp_.rounds} rounds x {cmp_.per_round})"
                + (f"; the machine was busy ({'; '.join(cmp_.machine.get('reasons', []))})" if cmp_.busy else "")
            )
            report.latency_samples.setdefault(name, {})[key] = {"baseline": cmp_.a_times_ms, "now": cmp_.b_times_ms, "how": "re-measured interleaved"}
            out.append(
                Finding(
                    name,
                    label,
                    "latency",
                    cmp_.a_p50_ms,
                    cmp_.b_p50_ms,
                    f"{cmp_.ratio:.3f}x",
                    f"<= {tol:g}x",
                    status,
                    detail + _status_note(status),
                    excess=(cmp_.low - tol) / (tol - 1 or 1e-9),
                )
            )
        elif b_stats.get("times_ms") and n_stats.get("times_ms"):
            a = blocks(b_stats["times_ms"], b_stats.get("rounds", 10))
            b = blocks(n_stats["times_ms"], n_stats.get("rounds", 10))
            b_fp32 = ((base_t.get("latency") or {}).get("fp32", {}).get(key) or {}).get("times_ms")
            n_fp32 = ((target.get("latency") or {}).get("fp32", {}).get(key) or {}).get("times_ms")
            a_ref = blocks(b_fp32, b_stats.get("rounds", 10)) if b_fp32 else []
            b_ref = blocks(n_fp32, n_stats.get("rounds", 10)) if n_fp32 else []
            if len(a_ref) == len(a) and len(b_ref) == len(b):
                ratio, low, high = relative_ratio(a, a_ref, b, b_ref, conf)
                how = "each run's time relative to its own FP32 model timed interleaved with it, which cancels machine drift between the two runs"
            else:
                ratio, low, high = bootstrap_ratio(a, b, conf, paired=False)
                how = "raw times measured at different times, so machine drift is not controlled"
            status = latency_status(ratio, low, high, tol) if same_cpu else "inconclusive"
            detail = f"compared with the recorded distribution ({where}): now/baseline {ratio:.3f} ({conf:.0%} CI {low:.3f}-{high:.3f}); " + (
                how if same_cpu else "recorded on another CPU, so the times are not comparable"
            )
            report.latency_samples.setdefault(name, {})[key] = {"baseline": b_stats["times_ms"], "now": n_stats["times_ms"], "how": "recorded"}
            out.append(
                Finding(
                    name,
                    label,
                    "latency",
                    b_stats.get("p50_ms"),
                    n_stats.get("p50_ms"),
                    f"{ratio:.3f}x",
                    f"<= {tol:g}x",
                    status,
                    detail + _status_note(status),
                    excess=(low - tol) / (tol - 1 or 1e-9),
                )
            )
        else:
            lacking = bool(b_stats.get("times_ms")) and not n_stats.get("times_ms") and "latency" not in profile.gate.optional
            out.append(
                Finding(
                    name,
                    label,
                    "latency",
                    b_stats.get("p50_ms"),
                    n_stats.get("p50_ms"),
                    "—",
                    f"<= {tol:g}x",
                    "missing" if lacking else "inconclusive",
                    f"no latency samples to compare ({where}; "
                    + (f"this run recorded none at batch {batch}, which the bar times)" if lacking else f"the baseline recorded none at batch {batch})"),
                )
            )
        bs, ns = base_t["metrics"].get(f"speedup_vs_fp32@{batch}"), target["metrics"].get(f"speedup_vs_fp32@{batch}")
        if bs and ns:
            out.append(
                Finding(
                    name,
                    f"speed-up over FP32 (batch {batch})",
                    "latency",
                    bs,
                    ns,
                    f"{ns / bs:.3f}x",
                    "—",
                    "info",
                    "each run timed its artifact interleaved with its own FP32 model; reported, not gated",
                )
            )
    return out


def _status_note(status: str) -> str:
    return {
        "inconclusive": " — INCONCLUSIVE: the interval straddles the tolerance; the machine is too noisy to tell (the --inconclusive policy decides)",
        "fail": " — slower beyond the tolerance with the whole interval",
        "pass": "",
        "missing": "",
    }[status]


def _remeasure(
    base_art: Path,
    base_t: dict,
    target: dict,
    profile: Any,
    run_dir: Path,
    rounds: int,
    per_round: int,
    confidence: float,
    batches: list[int] | None = None,
    timer: Any = None,
) -> dict[int, Any]:
    """Baseline vs candidate artifact, interleaved in one child process, per batch size (here, or on a
    device: ``timer``, runtime.compare.compare's signature)."""

    bundle = target.get("bundle") or {}
    cand_path = inside(run_dir, bundle["artifact"])
    _, specs = artifact_for(cand_path, None, profile.backend)
    cand = Artifact(cand_path, profile.backend, dict(bundle.get("artifact_options") or {}))
    base = Artifact(base_art, profile.backend, dict(base_t["artifact"].get("options") or {}))
    real = None
    data_file = run_dir / "bundle" / "eval_data.npz"
    if data_file.is_file():
        with np.load(data_file, allow_pickle=False) as npz:
            real = {k.split(":", 1)[1]: npz[k][: max(profile.batch_sizes)] for k in npz.files if k.startswith("input:")}
    timer = timer or compare
    return {b: timer(base, cand, make_feeds(specs, b, real), profile.threads, rounds, per_round, confidence=confidence) for b in batches or profile.batch_sizes}


def github_step_summary(markdown: str) -> Path | None:
    """Append to GitHub Actions' job summary when running there."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return None
    with open(path, "a") as f:
        f.write(markdown + "\n")
    return Path(path)
