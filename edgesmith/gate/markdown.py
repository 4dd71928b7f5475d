"""The gate's Markdown summary: fit for a pull-request comment or a CI step summary, worst first."""

from __future__ import annotations

from typing import Any

from edgesmith.report import md

ICON = {"fail": "❌ fail", "missing": "❌ missing", "inconclusive": "⚠️ inconclusive", "new": "🆕 new", "pass": "✅ pass", "info": "ℹ️ info"}


def _v(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return str(x) if x != x or abs(x) == float("inf") else f"{x:.4g}"
    return str(x)


def _cell(s: Any) -> str:
    return md(s)


def render_summary(report: Any, baseline: dict[str, Any]) -> str:
    lines = [
        f"## edgesmith check: {md(report.headline())}",
        "",
        f"Run {md(report.run_dir)} against baseline {md(report.baseline_path)} "
        f"(saved {md(baseline.get('created', '?'))} from recipe {md((baseline.get('identity') or {}).get('recipe name'))}).",
        "",
    ]
    if report.forced_over:
        lines += ["> **Forced** past identity differences: " + md("; ".join(report.forced_over)), ""]
    if report.count("inconclusive"):
        lines += [
            f"> {report.count('inconclusive')} check(s) **inconclusive**: the measurement was too noisy to tell either way"
            + (" — counted as failures (--strict)." if report.strict else " — not counted as failures."),
            "",
        ]
    lines += ["| target | metric | baseline | now | delta | budget | verdict |", "|---|---|---|---|---|---|---|"]
    for f in report.sorted_findings():
        lines.append(
            "| " + " | ".join(_cell(c) for c in (f.target, f.metric, _v(f.baseline), _v(f.now), f.delta, f.budget, ICON.get(f.status, f.status))) + " |"
        )
    lines += ["", "<details><summary>Details</summary>", ""]
    lines += [f"- **{_cell(f.target)} / {_cell(f.metric)}** ({f.status}): {_cell(f.detail)}" for f in report.sorted_findings() if f.detail]
    if report.changes:
        lines += ["", "Changed since the baseline:", ""] + [f"- {md(c)}" for c in report.changes]
    lines += [f"- note: {md(n)}" for n in report.notes]
    lines += ["", "</details>", ""]
    return "\n".join(lines)
