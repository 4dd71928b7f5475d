"""The HTML report renders in a real headless browser (Debian's Chromium): no script errors, every plot drawn."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="Debian's chromium is not installed (make test installs it as root)")


def render(html: Path, tmp_path: Path) -> str:
    """The DOM after the page's scripts ran, as Chromium serialises it."""
    assert CHROMIUM, "chromium is required under CI (scripts/ensure-chromium.sh installs it)"
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            html.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def plots(dom: str) -> list[dict]:
    out = []
    for tag in re.findall(r"<svg [^>]*class=\"plot\"[^>]*>", dom):
        attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
        out.append(attrs)
    return out


def root_attrs(dom: str) -> dict:
    return dict(re.findall(r'([\w-]+)="([^"]*)"', re.search(r"<html[^>]*>", dom).group(0)))


@needs_browser
def test_gate_report_renders_with_every_plot_drawn(cli, gate_runs, tmp_path):
    baseline = tmp_path / "baseline.json"
    assert cli("baseline", "save", gate_runs["base"], "--to", baseline).code == 0
    out = tmp_path / "gate"
    assert cli("check", gate_runs["worse"], "--baseline", baseline, "--out", out, "--rounds", "4", "--per-round", "5").code == 1
    dom = render(out / "report.html", tmp_path)
    root = root_attrs(dom)
    assert root.get("data-ready") == "true" and "data-script-errors" not in root
    drawn = plots(dom)
    ids = {p["id"] for p in drawn}
    assert {"pareto", "latency-x86-avx512-vnni-ort-1", "latency-x86-avx512-vnni-ort-8"} <= ids
    for p in drawn:
        assert int(p["data-marks"]) > 0 and p["data-drawn"] == p["data-marks"], p
    assert "worst first" in dom and "❌" not in dom  # the HTML uses its own status styles


@needs_browser
def test_report_across_runs_with_sensitivity(cli, gate_runs, variant, tmp_path):
    def with_sensitivity(m):
        m["targets"]["x86-avx512-vnni-ort"]["details"]["sensitivity"] = {"conv1": 0.8, "conv2": 0.1, "fc": 0.3}

    run = variant(gate_runs["base"], with_sensitivity)
    html = tmp_path / "report.html"
    r = cli("report", run, gate_runs["worse"], "--html", html)
    assert r.code == 0, r.stderr
    dom = render(html, tmp_path)
    drawn = {p["id"]: p for p in plots(dom)}
    assert int(drawn["sensitivity-x86-avx512-vnni-ort"]["data-drawn"]) == 3
    assert int(drawn["pareto"]["data-drawn"]) == 3  # two runs' INT8 points and one FP32 point


@needs_browser
def test_the_browser_check_can_fail(gate_runs, tmp_path):
    from edgesmith.gate.baseline import load_run
    from edgesmith.reporting.document import to_html
    from edgesmith.reporting.runs import runs_report

    html = to_html(runs_report([("run", load_run(gate_runs["base"]))]))
    broken = tmp_path / "broken.html"
    broken.write_text(html.replace("</body>", "<script>notDefinedAnywhere();</script></body>"))
    assert root_attrs(render(broken, tmp_path)).get("data-script-errors") == "1"


def test_report_is_self_contained(gate_runs):
    from edgesmith.gate.baseline import load_run
    from edgesmith.reporting.document import to_html
    from edgesmith.reporting.runs import runs_report

    html = to_html(runs_report([("run", load_run(gate_runs["base"]))]))
    assert not re.search(r"(src|href)=[\"']https?://", html)  # nothing fetched from the network
