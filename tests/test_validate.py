from __future__ import annotations

import numpy as np
import pytest

from edgesmith.evaluate import judge, overall
from edgesmith.metrics import cosine, sqnr_db, top1
from edgesmith.profiles import load_profile


def test_metrics_on_known_values():
    ref = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert cosine(ref, ref) == pytest.approx(1.0)
    assert cosine(ref, -ref) == pytest.approx(-1.0)
    assert cosine(ref, np.array([[1.0, 1.0], [0.0, 5.0]])) == pytest.approx((1 / np.sqrt(2) + 1) / 2)
    assert sqnr_db(ref, ref) == float("inf")
    assert sqnr_db(ref, ref * 1.1) == pytest.approx(20.0)  # noise power = 1% of signal power
    assert top1(np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), np.array([1, 0, 0])) == pytest.approx(200 / 3)


def _metrics(top1_value, cos=0.999, p90=1.0, speedup=2.0):
    m = {
        "top1": top1_value,
        "cosine": cos,
        "output_fidelity": 0.99,
        "decision_agreement": 0.99,
        "artifact_mb": 1.0,
        "peak_memory_mb": 100.0,
        "latency_p90_ms@1": p90,
        "speedup_vs_fp32@1": speedup,
    }
    r = {"top1": 99.0, "cosine": 1.0, "output_fidelity": 1.0, "latency_p90_ms@1": 2.0, "speedup_vs_fp32@1": 1.0, "peak_memory_mb": 100.0}
    return m, r


def test_judge_passes_within_budget_and_fails_beyond():
    prof = load_profile("x86-avx512-vnni-ort")
    ok = judge(prof, *_metrics(98.6))
    assert overall(ok) == "pass" and all(v.status == "pass" for v in ok)
    bad = judge(prof, *_metrics(98.4, speedup=0.9))
    failed = {v.metric for v in bad if v.status == "fail"}
    assert failed == {"top1", "speedup_vs_fp32"} and overall(bad) == "fail"
    assert next(v for v in bad if v.metric == "top1").detail == "drop 0.6 pt"
    m, r = _metrics(98.6)
    m["decision_agreement"] = 0.9  # a tenth of the float model's top-1 answers changed, top-1 within its budget
    assert overall(judge(prof, m, r)) == "fail"
    del m["decision_agreement"]  # not class outputs: the budget is n/a and says why, in words a user acts on
    da = next(v for v in judge(prof, m, r) if v.metric == "decision_agreement")
    assert da.status == "n/a" and "not class scores" in da.detail and "output_fidelity" in da.detail


def test_relative_degradation_goal():
    from edgesmith.profiles.schema import Goal

    prof = load_profile("x86-avx512-vnni-ort").with_overrides([Goal(metric="top1", goal="max-relative-degradation", value=1.0)], None, None)
    assert next(v for v in judge(prof, *_metrics(98.0)) if v.metric == "top1").status == "fail"  # 1.01% relative
    assert next(v for v in judge(prof, *_metrics(98.1)) if v.metric == "top1").status == "pass"


def test_latency_on_another_architecture_is_not_judged():
    prof = load_profile("arm-cortex-a72-ort")
    verdicts = judge(prof, *_metrics(98.9, p90=10_000.0))
    lat = next(v for v in verdicts if v.metric == "latency_p90_ms")
    assert lat.status == "n/a" and "target is aarch64" in lat.detail and lat.estimate
    assert overall(verdicts) == "pass"


def test_missing_metric_is_not_a_silent_pass():
    prof = load_profile("x86-avx512-vnni-ort")
    m, r = _metrics(99.0)
    del m["top1"]
    v = next(v for v in judge(prof, m, r) if v.metric == "top1")
    assert v.status == "n/a" and "not computed" in v.detail


def test_a_budget_on_a_metric_nobody_computed_fails_and_a_non_finite_budget_is_refused():
    from pydantic import ValidationError

    from edgesmith.profiles.schema import Goal

    # a misspelt budget (or one a metric function did not return) fails, naming what was computed
    prof = load_profile("x86-avx512-vnni-ort").with_overrides([Goal(metric="acuracy", goal="min", value=90.0)], None, None)
    m, r = _metrics(99.0)
    m["accuracy"] = 99.0
    v = next(v for v in judge(prof, m, r) if v.metric == "acuracy")
    assert v.status == "fail" and "no metric named 'acuracy'" in v.detail and "accuracy" in v.detail
    assert overall(judge(prof, m, r)) == "fail"
    for value in (float("nan"), float("inf")):
        with pytest.raises(ValidationError, match="a budget needs a finite value"):
            Goal(metric="top1", goal="max-degradation", value=value)


def test_a_budget_on_an_unknown_metric_is_refused_before_any_work_without_a_metric_function(tmp_path):
    from edgesmith.errors import ConfigError
    from edgesmith.plan import resolve_plan
    from edgesmith.recipe import parse_recipe

    budget = [{"metric": "top-1", "goal": "max-degradation", "value": 1}]
    recipe = {"model": {"source": "edgesmith.zoo:digits_cnn"}, "targets": [{"profile": "x86-avx512-vnni-ort", "budgets": budget}]}
    with pytest.raises(ConfigError, match="budget on 'top-1', which no metric of this run computes"):
        resolve_plan(parse_recipe(recipe), tmp_path, tmp_path / "out")
    resolve_plan(parse_recipe({**recipe, "metric": "mypkg.metrics:score"}), tmp_path, tmp_path / "out")  # its names are known once it ran
