"""One model of a result, four writers (reporting/document.py): what a Report holds reaches every format."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from edgesmith.report import Markup
from edgesmith.reporting.document import Check, Report, Section, Table, to_html, to_json, to_junit, to_markdown, write


def _report() -> Report:
    table = Table(["trial", "result"], [[0, Markup("**front**")], [1, "fail"]], ["pass", "fail"], status_column=1)
    return Report(
        "edgesmith demo: `x`",
        "fail",
        ["- a fact"],
        ["**Why**: because"],
        [Section("Trials", ["- a line"], table), Section("Plots", ["only in HTML"], figures=["<svg class='plot'></svg>"], html_only=True)],
        [
            Check("edgesmith.t", "top1", "fail", "drop 3 pt", "detail", "budget"),
            Check("edgesmith.t", "size", "pass"),
            Check("edgesmith.u", "p50", "skipped", "noisy"),
        ],
        {"verdict": "fail", "n": 2},
        {"run_dir": "runs/x"},
    )


def test_every_writer_renders_the_same_content():
    r = _report()
    md = to_markdown(r)
    assert md.startswith("# edgesmith demo: `x`\n") and "- a fact" in md and "**Why**: because" in md
    assert "| 0 | **front** |" in md and "| 1 | ❌ fail |" in md  # the status column gets its icon in Markdown
    assert "only in HTML" not in md and "<svg" not in md
    html = to_html(r)
    assert "<code>x</code>" in html and "<b>Why</b>: because" in html and "<svg class='plot'></svg>" in html
    assert '<tr class="s-fail"><td class="num">1</td><td>fail</td></tr>' in html and "❌" not in html
    assert json.loads(to_json(r)) == {"verdict": "fail", "n": 2}
    root = ET.fromstring(to_junit(r))
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("3", "1", "1")
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"edgesmith.t", "edgesmith.u"}
    assert suites["edgesmith.t"].find("properties/property").get("value") == "runs/x"
    assert suites["edgesmith.t"].find("testcase/failure").get("message") == "drop 3 pt"


def test_write_puts_each_format_beside_the_others(tmp_path):
    written = write(_report(), tmp_path, "demo")
    assert sorted(p.name for p in written.values()) == ["demo.html", "demo.json", "demo.junit.xml", "demo.md"]
    assert not [p for p in tmp_path.iterdir() if p.name not in {"demo.html", "demo.json", "demo.junit.xml", "demo.md"}]  # nothing half-written left
