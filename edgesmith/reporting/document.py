"""One model of a result, four writers: every report edgesmith writes (a run, a search, optimize, tune, the
gate) is built as a ``Report`` and rendered by the same writers to Markdown, HTML, JSON and JUnit XML.

A ``Report`` is a title and verdict, facts (the bullet list under the title), a summary (the "why"), sections
(a title, lines, a table, figures), checks (each budget judged: JUnit's test cases) and the machine-readable
result (JSON). Text from recipes, models, profiles or plugins is escaped by every writer (``report.md``
rules for Markdown, HTML escaping for HTML); ``Markup`` is text a builder composed itself (bold, a code span).
"""

from __future__ import annotations

import json
import re
import socket
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from edgesmith.outputs import atomic_write_text
from edgesmith.report import Markup, md, md_row, md_table
from edgesmith.reporting.html import page


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    row_status: list[str] = field(default_factory=list)  # per row: pass | fail | ... (HTML colours the row)
    status_column: int | None = None  # this column holds the row's status: Markdown shows it with an icon


@dataclass
class Section:
    title: str  # "" : no heading (the table follows the summary)
    lines: list[Any] = field(default_factory=list)  # bullets ("- ...") or paragraphs, Markdown a builder composed
    table: Table | None = None
    figures: list[str] = field(default_factory=list)  # SVG (HTML only)
    level: int = 2
    html_only: bool = False  # a section of plots: the text formats leave it out


@dataclass
class Check:
    """One thing judged (a budget, a trial within budget): a JUnit test case."""

    suite: str
    name: str
    status: str  # pass | fail | error | skipped
    message: str = ""
    detail: str = ""
    kind: str = ""


@dataclass
class Report:
    title: str
    verdict: str
    facts: list[Any] = field(default_factory=list)
    summary: list[Any] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)  # JUnit suite properties (run folder, baseline...)
    duration_s: float = 0.0
    level: int = 1  # the title's heading level (2: a summary that goes below others, as in a CI step summary)


def trial_checks(records: list[Any], suite: str) -> list[Check]:
    """The engine's trials as checks: within every budget judged (pass), outside one (fail, with the gaps),
    a build or timing that failed (error), a trial not run (skipped)."""
    out = []
    for t in records:
        name = f"#{t.number} {t.label}"
        if t.state == "skipped":
            out.append(Check(suite, name, "skipped", t.reason or "not run", kind="trial"))
        elif t.state != "complete":
            out.append(Check(suite, name, "error", t.error or t.reason or "failed", kind="trial"))
        elif t.feasible:
            out.append(Check(suite, name, "pass", "within every budget judged", kind="trial"))
        else:
            out.append(Check(suite, name, "fail", "; ".join(t.gaps) or t.reason or "outside a budget", kind="trial"))
    return out


WRITERS = {"md": lambda r: to_markdown(r), "json": lambda r: to_json(r), "html": lambda r: to_html(r), "junit.xml": lambda r: to_junit(r)}


def write(r: Report, folder: Path, stem: str, formats: tuple[str, ...] = ("md", "json", "html", "junit.xml")) -> dict[str, Path]:
    """``stem.md``, ``stem.json``, ``stem.html``, ``stem.junit.xml`` in ``folder``, each written atomically."""

    written = {}
    for fmt in formats:
        path = folder / f"{stem}.{fmt}"
        atomic_write_text(path, WRITERS[fmt](r))
        written[fmt] = path
    return written


def to_markdown(r: Report) -> str:
    lines = ["#" * r.level + f" {r.title}", ""]
    if r.facts:
        lines += [str(f) for f in r.facts] + [""]
    for p in r.summary:
        lines += [str(p), ""]
    for s in r.sections:
        if s.html_only:
            continue
        if s.title:
            lines += ["#" * s.level + " " + s.title, ""]
        if s.lines:
            lines += [str(x) for x in s.lines] + [""]
        if s.table is not None:
            lines += md_table(s.table.headers) + [md_row(_iconed(s.table, row)) for row in s.table.rows] + [""]
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


ICON = {"fail": "❌ fail", "missing": "❌ missing", "inconclusive": "⚠️ inconclusive", "new": "🆕 new", "pass": "✅ pass", "info": "ℹ️ info"}


def _iconed(t: Table, row: list[Any]) -> list[Any]:
    if t.status_column is None:
        return row
    return [ICON.get(str(c), c) if i == t.status_column else c for i, c in enumerate(row)]


def to_json(r: Report) -> str:
    return json.dumps(r.data, indent=1, default=str) + "\n"


def to_junit(r: Report) -> str:
    """JUnit XML as CI systems read it (Jenkins' schema, GitLab, GitHub test reporters): ``testsuites`` >
    ``testsuite`` per suite > ``testcase`` per check; ``failure`` for a failed check, ``error`` for one that
    could not be judged, ``skipped`` for an inconclusive one."""
    root = ET.Element("testsuites", name=r.title)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    suites: dict[str, list[Check]] = {}
    for c in r.checks:
        suites.setdefault(c.suite, []).append(c)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    for name, checks in suites.items():
        suite = ET.SubElement(root, "testsuite", name=name, timestamp=stamp, hostname=socket.gethostname())
        if r.properties:
            props = ET.SubElement(suite, "properties")
            for key, value in r.properties.items():
                ET.SubElement(props, "property", name=key, value=str(value))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for c in checks:
            case = ET.SubElement(suite, "testcase", classname=name, name=c.name, time="0")
            counts["tests"] += 1
            tag = {"fail": "failure", "error": "error", "skipped": "skipped"}.get(c.status)
            if tag == "failure":
                ET.SubElement(case, "failure", message=c.message, type=f"edgesmith.{c.kind or 'budget'}").text = c.detail
                counts["failures"] += 1
            elif tag == "error":
                ET.SubElement(case, "error", message=c.message).text = c.detail
                counts["errors"] += 1
            elif tag == "skipped":
                ET.SubElement(case, "skipped", message=c.message)
                counts["skipped"] += 1
            ET.SubElement(case, "system-out").text = "\n".join(x for x in (c.message, c.detail) if x)
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
        suite.set("time", "0")
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", f"{r.duration_s:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def to_html(r: Report) -> str:
    """One self-contained file (no network): the same content as the Markdown, tables sortable, figures inline."""

    parts = [f"<h1>{_inline(r.title)}</h1>", f"<p>{badge(r.verdict)}</p>"]
    if r.facts:
        parts.append(_lines(r.facts))
    parts += [f"<p>{_inline(p)}</p>" for p in r.summary]
    for s in r.sections:
        if s.title:
            parts.append(f"<h{s.level}>{_inline(s.title)}</h{s.level}>")
        if s.lines:
            parts.append(_lines(s.lines))
        parts += s.figures
        if s.table is not None:
            parts.append(_table(s.table))
    return page(r.title, parts)


def badge(verdict: str) -> str:
    cls = {"pass": "b-pass", "fail": "b-fail"}.get(verdict, "b-other")
    return f'<span class="badge {cls}">{escape(verdict.upper())}</span>'


def _lines(lines: list[Any]) -> str:
    bullets = [str(x)[2:] for x in lines if str(x).startswith("- ")]
    rest = [str(x) for x in lines if not str(x).startswith("- ")]
    out = ("<ul>" + "".join(f"<li>{_inline(b)}</li>" for b in bullets) + "</ul>") if bullets else ""
    return out + "".join(f"<p>{_inline(p)}</p>" for p in rest)


def _table(t: Table) -> str:
    head = "".join(f"<th>{_inline(h)}</th>" for h in t.headers)
    rows = []
    for i, row in enumerate(t.rows):
        status = t.row_status[i] if i < len(t.row_status) else ""
        cls = f' class="s-{escape(status)}"' if status else ""
        cells = "".join(f"<td{_num(c)}>{_cell(c)}</td>" for c in row)
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _num(c: Any) -> str:
    return ' class="num"' if isinstance(c, (int, float)) and not isinstance(c, bool) else ""


def _cell(c: Any) -> str:
    return _inline(c) if isinstance(c, Markup) else escape(" ".join(str(c).split()))


_CODE = re.compile(r"`([^`]*)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _inline(text: Any) -> str:
    """Markdown a builder composed (user text in it already made inert by ``report.md``) as HTML: code spans,
    bold, Markdown's backslash escapes undone; ``<`` and ``>`` escaped (``md`` left entities, kept as they are)."""
    s = str(text).replace("<", "&lt;").replace(">", "&gt;")
    s = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", s)
    s = _BOLD.sub(lambda m: f"<b>{m.group(1)}</b>", s)
    return re.sub(r"\\([|*\[\\])", r"\1", s)


__all__ = ["Check", "Markup", "Report", "Section", "Table", "badge", "md", "to_html", "to_json", "to_junit", "to_markdown", "write"]
