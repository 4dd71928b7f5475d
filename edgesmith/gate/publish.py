"""What a gate run produced, as one Report (reporting/document.py) written by the one set of writers:
check.json, junit.xml, summary.md (fit for a pull-request comment or a CI step summary, worst first) and
report.html (the same, with the runs' plots), each atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgesmith.gate.check import github_step_summary
from edgesmith.outputs import atomic_write_text, own
from edgesmith.report import md
from edgesmith.reporting import svg
from edgesmith.reporting.document import Check, Report, Section, Table, to_html, to_json, to_junit, to_markdown
from edgesmith.reporting.runs import figure_sections


def _v(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return str(x) if x != x or abs(x) == float("inf") else f"{x:.4g}"
    return str(x)


def gate_report(report: Any, baseline: dict[str, Any], manifest: dict[str, Any] | None = None, duration_s: float = 0.0) -> Report:
    summary = [
        f"Run {md(report.run_dir)} against baseline {md(report.baseline_path)} "
        f"(saved {md(baseline.get('created', '?'))} from recipe {md((baseline.get('identity') or {}).get('recipe name'))})."
    ]
    if report.forced_over:
        summary.append("**Forced** past identity differences: " + md("; ".join(report.forced_over)))
    if report.count("inconclusive"):
        summary.append(
            f"{report.count('inconclusive')} check(s) **inconclusive**: the data could not decide either way"
            + {
                "fail": " — counted as failures (--inconclusive fail).",
                "warn": " — verdict INCONCLUSIVE, not a failure (--inconclusive warn).",
                "pass": " — counted as passes (--inconclusive pass).",
            }[report.policy]
        )
    if report.bar_changes:
        summary.append("**The bar was changed** (accepted explicitly): " + md("; ".join(report.bar_changes)))
    found = report.sorted_findings()
    table = Table(
        ["target", "metric", "baseline", "now", "delta", "budget", "verdict"],
        [[f.target, f.metric, _v(f.baseline), _v(f.now), f.delta, f.budget, f.status] for f in found],
        [f.status for f in found],
        status_column=6,
    )
    sections = [Section("Gate: baseline vs now (worst first)", table=table)]
    details = [f"- **{md(f.target)} / {md(f.metric)}** ({f.status}): {md(f.detail)}" for f in found if f.detail]
    details += [f"- note: {md(n)}" for n in report.notes]
    if details:
        sections.append(Section("Details", details, level=3))
    if report.changes:
        sections.append(Section("Changed since the baseline", [f"- {md(c)}" for c in report.changes], level=3))
    for h in report.history:
        rows = [[r["baseline"], *[_v(r.get(m)) for m in h["metrics"]]] for r in h["rows"]]
        plots = [svg.trend(f"trend-{h['target']}-{m}", f"{h['target']}: {m}", [(r["baseline"], r.get(m)) for r in h["rows"]], m) for m in h["metrics"]]
        sections.append(
            Section(
                f"Trend over the last accepted baselines: {md(h['target'])}",
                table=Table(["baseline", *h["metrics"]], rows),
                figures=[p for p in plots if p],
                level=3,
            )
        )
    if manifest is not None:
        sections += figure_sections([("now", manifest)], baseline, report.as_dict())
    return Report(
        f"edgesmith check: {md(report.headline())}",
        report.verdict,
        [],
        summary,
        sections,
        _checks(report),
        report.as_dict(),
        {"run_dir": report.run_dir, "baseline": report.baseline_path, "strict": str(report.strict).lower(), "inconclusive": report.policy},
        duration_s,
        level=2,
    )


def _checks(report: Any) -> list[Check]:
    """One test case per budget per target: ``failure`` for a regression, ``skipped`` for an inconclusive or
    new check (a failure under --strict); informational rows are not test cases."""
    out = []
    for f in report.sorted_findings():
        if f.status == "info":
            continue
        summary = f"baseline {_v(f.baseline)}, now {_v(f.now)} ({f.delta}); budget {f.budget}"
        if f.status in ("fail", "missing") or (f.status == "inconclusive" and report.strict):
            status, message = "fail", f"{f.status}: {summary}"
        elif f.status in ("inconclusive", "new", "accepted"):
            status, message = "skipped", f"{f.status}: {f.detail}"
        else:
            status, message = "pass", summary
        out.append(Check(f"edgesmith.{f.target}", f"{f.metric} [{f.kind}]", status, message, f.detail, f.kind))
    return out


def write_gate_outputs(report: Any, baseline: dict[str, Any], manifest: dict[str, Any], out_dir: Path, duration_s: float) -> dict[str, Path]:

    doc = gate_report(report, baseline, manifest, duration_s)
    summary = to_markdown(doc)
    files = {"check.json": to_json(doc), "junit.xml": to_junit(doc), "summary.md": summary, "report.html": to_html(doc)}
    written = {}
    for name, text in files.items():
        atomic_write_text(out_dir / name, text)
        written[name] = out_dir / name
    own(out_dir.parent, [out_dir])  # the gate's folder inside a run is the run's: a new run into it replaces it
    step = github_step_summary(summary)
    if step:
        written["GITHUB_STEP_SUMMARY"] = step
    return written
