"""Markdown made safe (every report's escaping and table rows), a run's verdict rows, and the console verdict
table. The reports themselves are built in reporting/ (one model, four writers)."""

from __future__ import annotations

import sys
from typing import Any

from edgesmith import terminal

# how gate findings sort, worst first (the terminal table, Markdown summary and HTML report agree)
STATUS_RANK = {"fail": 0, "missing": 1, "inconclusive": 2, "new": 3, "pass": 4, "info": 5}


def md(text: Any) -> str:
    """Text from recipes, models, profiles or plugins, made inert in Markdown: no raw HTML (``<`` and
    ``&`` become entities), no table breaks (``|``), no code-span or emphasis breakouts, one line."""
    out = " ".join(str(text).split())
    # NOTE: "_" stays (inside words it never starts emphasis in CommonMark) and so does ">" (no tag opens
    # without "<"; our lines never start with it, so it is no blockquote either)
    for a, b in (("&", "&amp;"), ("<", "&lt;"), ("|", "\\|"), ("`", "&#96;"), ("*", "\\*"), ("[", "\\[")):
        out = out.replace(a, b)
    return out


class Markup(str):
    """Markdown the writer composed itself (bold, a code span): a table row keeps it as it is."""


def md_code(text: Any) -> Markup:
    """A code span safe inside a table cell: one line, no backtick to close it early, ``|`` escaped (GFM
    splits cells on it even inside code)."""
    return Markup("`" + " ".join(str(text).split()).replace("`", "'").replace("|", "\\|") + "`")


def md_row(cells: Any) -> str:
    """One table row; every cell that is not ``Markup`` is escaped with ``md`` (labels, errors, reasons
    and settings come from recipes, models and plugins). Every report's tables are written with it."""
    return "| " + " | ".join(c if isinstance(c, Markup) else md(c) for c in cells) + " |"


def md_table(headers: list[str]) -> list[str]:
    return [md_row([Markup(h) for h in headers]), "|" + "---|" * len(headers)]


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return str(v)
        return f"{v:.4g}"
    return str(v)


def _metric_label(v: dict) -> str:
    return v["metric"] + (f" (batch {v['batch']})" if v.get("batch") else "")


def budget_text(v: dict) -> str:
    b = f"{v['budget']:g}"
    return {"max-degradation": f"drop <= {b} pt", "max-relative-degradation": f"drop <= {b}%", "min": f">= {b}", "max": f"<= {b}"}[v["goal"]]


def verdict_rows(target: dict) -> list[list[str]]:
    """One row per budget, then one per measure the run computed that no budget names ("MEASURED"): what
    the user reads is every number the run has (decision agreement included), not only the judged ones."""
    rows = []
    for v in target.get("verdicts", []):
        status = v["status"].upper() + (" (estimate)" if v.get("estimate") and v["status"] != "n/a" else "")
        detail = v.get("detail", "")
        if detail.startswith((">=", "<=")):  # the budget column says that much; keep what follows (the interval)
            detail = detail.partition("; ")[2]
        rows.append([_metric_label(v), _fmt(v["value"]), _fmt(v["reference"]), budget_text(v), status, detail])
    budgeted = {v["metric"] for v in target.get("verdicts", [])}
    metrics, reference = target.get("metrics") or {}, target.get("reference_metrics") or {}
    for k in sorted(k for k in metrics if "@" not in k and k not in budgeted):
        rows.append([k, _fmt(metrics[k]), _fmt(reference.get(k)), "—", "MEASURED", "no budget in the profile: reported, not judged"])
    return rows


def print_verdicts(manifest: dict, out_dir: str, console: Any = None) -> None:

    from rich.table import Table

    # NOTE: piped output (CI logs) gets a wide table instead of rich's 80-column default
    console = console or terminal.console(width=None if sys.stdout.isatty() else 140)
    for name, t in manifest.get("targets", {}).items():
        from rich.markup import escape

        table = Table(title=escape(f"{name}: {t['verdict'].upper()}"), title_justify="left")
        for col in ("metric", "value", "float", "budget", "verdict", "detail"):
            table.add_column(col, overflow="fold")
        for row in verdict_rows(t):
            style = {"PASS": "green", "FAIL": "bold red", "MEASURED": "dim"}.get(row[4].split()[0], "yellow")
            table.add_row(*(escape(c) for c in row[:4]), f"[{style}]{escape(row[4])}[/]", escape(row[5]))
        console.print(table)
    console.print(f"verdict: [bold]{manifest['verdict'].upper()}[/]  artifacts and report: {escape(out_dir)}")
