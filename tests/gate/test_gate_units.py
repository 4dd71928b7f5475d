"""The gate's statistics and its JUnit/Markdown output, without running models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgesmith.gate.check import Finding, GateReport
from edgesmith.gate.noise import accuracy_noise, blocks, latency_status, mcnemar_p, relative_ratio
from edgesmith.runtime.compare import bootstrap_ratio


def test_mcnemar_exact_values():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(3, 3) == 1.0
    assert mcnemar_p(10, 0) == pytest.approx(2 / 1024)
    assert mcnemar_p(5, 1) == pytest.approx(2 * 7 / 64)  # P(X<=1), X~Bin(6, 1/2) = 7/64


def test_relative_ratio_cancels_machine_drift_but_not_a_real_slowdown():
    rng = np.random.default_rng(0)

    def run(machine: float, artifact: float):
        # per round, a machine speed factor that slows the artifact and its FP32 model alike
        speed = machine * rng.lognormal(0.0, 0.15, 10)
        fp32 = [s * rng.normal(2.0, 0.02, 10) for s in speed]
        comp = [s * rng.normal(1.0 * artifact, 0.01, 10) for s in speed]
        return comp, fp32

    base_c, base_f = run(1.0, 1.0)
    now_c, now_f = run(1.4, 1.0)  # the same artifact on a machine 40% slower at the time
    raw, raw_low, _ = bootstrap_ratio(base_c, now_c, paired=False)
    ratio, low, high = relative_ratio(base_c, base_f, now_c, now_f)
    assert raw_low > 1.1  # raw recordings would call it a regression
    assert 0.95 < low <= ratio <= high < 1.05 and latency_status(ratio, low, high, 1.10) == "pass"
    slow_c, slow_f = run(1.0, 1.3)  # a real 30% slowdown of the artifact, same machine speed
    ratio, low, _ = relative_ratio(base_c, base_f, slow_c, slow_f)
    assert ratio == pytest.approx(1.3, rel=0.05) and low > 1.1
    with pytest.raises(ValueError):
        relative_ratio(base_c, base_f[:5], now_c, now_f)


def test_accuracy_noise_paired_and_unpaired():
    base = np.ones(600, bool)
    now = base.copy()
    now[:2] = False
    within, text = accuracy_noise(100.0, 100 - 200 / 600, 600, base, now)
    assert within and "McNemar" in text
    now[:30] = False
    within, _ = accuracy_noise(100.0, 95.0, 600, base, now)
    assert not within
    within, text = accuracy_noise(98.0, 97.5, 600)  # unpaired: 0.5 pt on 600 samples is noise
    assert within and "unpaired" in text
    assert not accuracy_noise(98.0, 90.0, 600)[0]


def test_latency_status_reads_the_interval_against_the_tolerance():
    assert latency_status(1.3, 1.2, 1.4, 1.1) == "fail"
    assert latency_status(1.0, 0.97, 1.04, 1.1) == "pass"
    assert latency_status(1.1, 0.9, 1.3, 1.1) == "inconclusive"


@pytest.mark.parametrize("sigma,shift,expect", [(0.01, 1.0, "pass"), (0.01, 1.5, "fail"), (0.7, 1.12, "inconclusive")])
def test_synthetic_distributions(sigma, shift, expect):
    rng = np.random.default_rng(3)
    a = blocks(list(rng.lognormal(0, sigma, 100)), 10)
    b = blocks(list(rng.lognormal(np.log(shift), sigma, 100)), 10)
    ratio, low, high = bootstrap_ratio(a, b, 0.95, paired=False)
    assert latency_status(ratio, low, high, 1.10) == expect


def _report() -> GateReport:
    r = GateReport("runs/pr", "baseline.json", verdict="fail")
    r.findings = [
        Finding("t1", "top1", "accuracy", 99.0, 96.0, "-3 pt", "drop <= 0.5 pt", "fail", "drop 3 pt", excess=5),
        Finding("t1", "latency p50 (batch 1)", "latency", 1.0, 1.05, "1.05x", "<= 1.1x", "inconclusive", "noisy a|b"),
        Finding("t1", "artifact_mb", "size", 1.0, 1.0, "1.000x", "<= 1.05x", "pass"),
        Finding("t1", "sqnr_db", "fidelity", 30.0, 31.0, "+1 dB", "—", "info"),
        Finding("t2", "target", "target", None, None, "—", "present", "missing", "gone"),
    ]
    return r


def test_junit_matches_the_schema_ci_systems_read():
    from lxml import etree

    from edgesmith.gate.publish import gate_report
    from edgesmith.reporting.document import to_junit

    xml = to_junit(gate_report(_report(), {}, None, 1.5))
    schema = etree.XMLSchema(etree.parse(str(Path(__file__).with_name("junit.xsd"))))
    doc = etree.fromstring(xml.encode())
    schema.assertValid(doc)
    assert doc.get("tests") == "4" and doc.get("failures") == "2" and doc.get("skipped") == "1"  # info rows are not tests
    names = [c.get("name") for c in doc.iter("testcase")]
    assert names[0] == "top1 [accuracy]" and "sqnr_db [fidelity]" not in names
    # a check that can fail: a case without its required name is rejected by the same schema
    broken = etree.fromstring(xml.replace('name="top1 [accuracy]"', "").encode())
    assert not schema.validate(broken)


def test_markdown_summary_is_worst_first_and_escapes_cells():
    from edgesmith.gate.publish import gate_report
    from edgesmith.reporting.document import to_markdown

    md = to_markdown(gate_report(_report(), {"created": "2026-01-01", "identity": {"recipe name": "r"}}))
    rows = [line for line in md.splitlines() if line.startswith(("| t1", "| t2"))]
    assert [r.split("|")[2].strip() for r in rows] == ["top1", "target", "latency p50 (batch 1)", "artifact_mb", "sqnr_db"]
    assert md.startswith("## edgesmith check: FAIL: 1 fail, 1 missing, 1 inconclusive, 1 pass")
    assert "not a failure (--inconclusive warn)" in md
    assert "noisy a\\|b" in md  # a pipe in a cell does not break the table


def test_pareto_front():
    from edgesmith.reporting.svg import pareto_front

    pts = [(1.0, 99.0), (2.0, 99.5), (1.5, 98.0), (3.0, 99.5), (0.5, 90.0)]
    assert pareto_front(pts) == [4, 0, 1]
