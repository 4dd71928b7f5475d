"""Write what a gate run produced: check.json, junit.xml, summary.md and report.html, each atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_gate_outputs(report: Any, baseline: dict[str, Any], manifest: dict[str, Any], out_dir: Path, duration_s: float) -> dict[str, Path]:
    from edgesmith.gate.check import github_step_summary
    from edgesmith.gate.junit import render_junit
    from edgesmith.gate.markdown import render_summary
    from edgesmith.outputs import atomic_write_text
    from edgesmith.reporting.html import render_html

    gate = report.as_dict()
    summary = render_summary(report, baseline)
    files = {
        "check.json": json.dumps(gate, indent=1, default=str) + "\n",
        "junit.xml": render_junit(report, duration_s),
        "summary.md": summary,
        "report.html": render_html([("now", manifest)], baseline=baseline, gate=gate),
    }
    written = {}
    for name, text in files.items():
        atomic_write_text(out_dir / name, text)
        written[name] = out_dir / name
    step = github_step_summary(summary)
    if step:
        written["GITHUB_STEP_SUMMARY"] = step
    return written
