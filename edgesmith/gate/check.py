"""``edgesmith check RUN_DIR --baseline baseline.json``: judge a new run against a stored baseline.

Per target, one finding per budget kind:
- task metrics (top1, user metrics) may drop by the profile's tolerance; the fidelity cosine by the
  gate's ``cosine_drop``; each says whether the difference is within sampling noise;
- latency: the baseline artifact and the candidate are re-timed interleaved, here and now, and only a
  ratio whose whole confidence interval lies beyond the tolerance fails; without the baseline
  artifact, the recorded distributions are compared instead (and the finding says so); an interval
  that straddles the tolerance is ``inconclusive`` — never a failure unless asked (``--strict``);
- artifact size and peak memory may grow by their tolerances.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.errors import InputError
from edgesmith.gate.baseline import baseline_artifact, identity, identity_differences, load_baseline, load_run
from edgesmith.gate.noise import accuracy_noise, blocks, latency_status, relative_ratio
from edgesmith.metrics import unpack_bits
from edgesmith.outputs import inside
from edgesmith.profiles.schema import Profile
from edgesmith.progress import Reporter
from edgesmith.report import STATUS_RANK  # worst first: the order findings are listed in, in every gate view
from edgesmith.runtime import Artifact
from edgesmith.runtime.bench import artifact_for, make_feeds
from edgesmith.runtime.compare import bootstrap_ratio, compare

NOT_TASK = ("latency_", "speedup_vs_fp32", "peak_memory_mb", "artifact_mb", "cosine", "sqnr_db", "output_fidelity", "decision_agreement")


@dataclass
class Finding:
    target: str
    metric: str
    kind: str  # accuracy | fidelity | latency | size | memory | target
    baseline: float | None
    now: float | None
    delta: str
    budget: str
    status: str  # pass | fail | inconclusive | info | new | missing
    detail: str = ""
    excess: float = 0.0  # past the tolerance, as a fraction of it (orders findings of one status)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GateReport:
    run_dir: str
    baseline_path: str
    verdict: str = "pass"
    strict: bool = False
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
        parts = [f"{self.count(s)} {s}" for s in ("fail", "missing", "inconclusive", "new", "pass") if self.count(s)]
        return f"{self.verdict.upper()}: " + ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["baseline"], d["manifest"]
        d["findings"] = [f.as_dict() for f in self.sorted_findings()]
        return d


def _profile(target: dict[str, Any]) -> Any:

    return Profile.model_validate(target["profile"])


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
    rounds: int = 20,
    per_round: int = 10,
    latency_tolerance: float | None = None,
    accuracy_tolerance: float | None = None,
    reporter: Any = None,
) -> GateReport:

    rep = reporter or Reporter()
    baseline = load_baseline(baseline_path)
    manifest = load_run(run_dir)
    report = GateReport(str(run_dir), str(baseline_path), strict=strict, baseline=baseline, manifest=manifest)
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
        target = manifest["targets"][name]
        profile = _profile(target)
        if latency_tolerance is not None or accuracy_tolerance is not None:
            gate = profile.gate.model_copy(
                update={
                    k: v
                    for k, v in (("latency_ratio", None if latency_tolerance is None else 1.0 + latency_tolerance), ("accuracy_drop", accuracy_tolerance))
                    if v is not None
                }
            )
            profile = profile.model_copy(update={"gate": gate})
        base_t = baseline["targets"][name]
        report.findings += _accuracy(name, base_t, target, profile, manifest)
        report.findings += _size_and_memory(name, base_t, target, profile)
        with rep.step(f"[{name}] latency against the baseline"):
            report.findings += _latency(
                name, base_t, target, profile, baseline, baseline_path, run_dir, manifest, remeasure, same_cpu, rounds, per_round, report
            )
    bad = report.count("fail") + report.count("missing") + (report.count("inconclusive") if strict else 0)
    report.verdict = "fail" if bad else "pass"
    return report


def _accuracy(name: str, base_t: dict, target: dict, profile: Any, manifest: dict) -> list[Finding]:

    out = []
    base_m, now_m = base_t["metrics"], target["metrics"]
    n = ((manifest.get("data") or {}).get("evaluation") or {}).get("samples")
    for metric in sorted(k for k in base_m if not k.startswith(NOT_TASK)):
        b, v = base_m.get(metric), now_m.get(metric)
        tol = profile.accuracy_tolerance(metric)
        if v is None:
            out.append(Finding(name, metric, "accuracy", b, None, "—", f"drop <= {tol:g}", "fail", "not computed in this run"))
            continue
        drop = b - v
        status = "fail" if drop > tol + 1e-9 else "pass"
        detail = f"drop {drop:.3g} pt" if drop > 0 else ("unchanged" if drop == 0 else f"gain {-drop:.3g} pt")
        if metric == "top1" and n and drop != 0:
            bs, ns = base_t.get("samples") or {}, target.get("samples") or {}
            bits = (
                (unpack_bits(bs["top1_correct"], n), unpack_bits(ns["top1_correct"], n))
                if bs.get("n") == ns.get("n") == n and bs.get("top1_correct") and ns.get("top1_correct")
                else (None, None)
            )
            _, text = accuracy_noise(b, v, n, bits[0], bits[1], confidence=profile.gate.confidence)
            detail += f"; {text}"
        out.append(Finding(name, metric, "accuracy", b, v, f"{v - b:+.3g} pt", f"drop <= {tol:g} pt", status, detail, excess=(drop - tol) / max(tol, 1e-9)))
    if "cosine" in base_m and "cosine" in now_m:
        b, v, tol = base_m["cosine"], now_m["cosine"], profile.gate.cosine_drop
        status = "fail" if b - v > tol + 1e-12 else "pass"
        out.append(
            Finding(
                name,
                "cosine",
                "fidelity",
                b,
                v,
                f"{v - b:+.2g}",
                f"drop <= {tol:g}",
                status,
                "fidelity to the float model's outputs",
                excess=(b - v - tol) / max(tol, 1e-9),
            )
        )
    if "sqnr_db" in base_m and "sqnr_db" in now_m:
        b, v = base_m["sqnr_db"], now_m["sqnr_db"]
        delta = f"{v - b:+.3g} dB" if abs(b) != float("inf") and abs(v) != float("inf") else "—"
        out.append(Finding(name, "sqnr_db", "fidelity", b, v, delta, "—", "info", "reported, not gated"))
    return out


def _size_and_memory(name: str, base_t: dict, target: dict, profile: Any) -> list[Finding]:
    out = []
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
) -> list[Finding]:

    out: list[Finding] = []
    tol, conf = profile.gate.latency_ratio, profile.gate.confidence
    base_art, where = baseline_artifact(baseline, baseline_path, name) if remeasure else (None, "re-measuring was turned off (--no-remeasure)")
    if base_art is not None and base_t["artifact"]["backend"] != profile.backend:
        base_art, where = None, f"the baseline artifact is for {base_t['artifact']['backend']}, this target runs {profile.backend}"
    measured = None
    if base_art is not None:
        try:
            measured = _remeasure(base_art, base_t, target, profile, run_dir, rounds, per_round, conf)
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
                f"baseline artifact ({where}) and this run's re-timed interleaved here: now/baseline {cmp_.ratio:.3f} "
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
            out.append(
                Finding(
                    name,
                    label,
                    "latency",
                    b_stats.get("p50_ms"),
                    n_stats.get("p50_ms"),
                    "—",
                    f"<= {tol:g}x",
                    "inconclusive",
                    f"no latency samples to compare ({where}; one of the runs recorded none at batch {batch})",
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
        "inconclusive": " — INCONCLUSIVE: the interval straddles the tolerance; the machine is too noisy to tell, not a failure",
        "fail": " — slower beyond the tolerance with the whole interval",
        "pass": "",
    }[status]


def _remeasure(base_art: Path, base_t: dict, target: dict, profile: Any, run_dir: Path, rounds: int, per_round: int, confidence: float) -> dict[int, Any]:
    """Baseline vs candidate artifact, interleaved in one child process, per batch size."""

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
    return {b: compare(base, cand, make_feeds(specs, b, real), profile.threads, rounds, per_round, confidence=confidence) for b in profile.batch_sizes}


def github_step_summary(markdown: str) -> Path | None:
    """Append to GitHub Actions' job summary when running there."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return None
    with open(path, "a") as f:
        f.write(markdown + "\n")
    return Path(path)
