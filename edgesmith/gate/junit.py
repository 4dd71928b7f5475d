"""JUnit XML for the gate: one test case per budget per target, so any CI system lists them natively.

Shape as CI systems read it (Jenkins' junit schema, GitLab, GitHub test reporters): ``testsuites`` >
``testsuite`` per target > ``testcase`` per finding, with ``failure`` for a regression and ``skipped``
for an inconclusive or ungated check. Informational rows are not test cases.
"""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET
from typing import Any


def render_junit(report: Any, duration_s: float = 0.0) -> str:
    root = ET.Element("testsuites", name="edgesmith check")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    by_target: dict[str, list] = {}
    for f in report.sorted_findings():
        if f.status != "info":
            by_target.setdefault(f.target, []).append(f)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    for target, findings in by_target.items():
        suite = ET.SubElement(root, "testsuite", name=f"edgesmith.{target}", timestamp=stamp, hostname=socket.gethostname())
        props = ET.SubElement(suite, "properties")
        for k, v in (("run_dir", report.run_dir), ("baseline", report.baseline_path), ("strict", str(report.strict).lower())):
            ET.SubElement(props, "property", name=k, value=v)
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for f in findings:
            case = ET.SubElement(suite, "testcase", classname=f"edgesmith.{target}", name=f"{f.metric} [{f.kind}]", time="0")
            summary = f"baseline {_v(f.baseline)}, now {_v(f.now)} ({f.delta}); budget {f.budget}"
            counts["tests"] += 1
            if f.status in ("fail", "missing") or (f.status == "inconclusive" and report.strict):
                ET.SubElement(case, "failure", message=f"{f.status}: {summary}", type=f"edgesmith.{f.kind}").text = f.detail
                counts["failures"] += 1
            elif f.status in ("inconclusive", "new"):
                ET.SubElement(case, "skipped", message=f"{f.status}: {f.detail}")
                counts["skipped"] += 1
            ET.SubElement(case, "system-out").text = f"{summary}\n{f.detail}"
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
        suite.set("time", "0")
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", f"{duration_s:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _v(x: Any) -> str:
    return "—" if x is None else (f"{x:.4g}" if isinstance(x, float) else str(x))
