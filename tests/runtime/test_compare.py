"""A/B comparison: block bootstrap on synthetic latency distributions, and the real command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgesmith.runtime.compare import Comparison, bootstrap_ratio


def _rounds(rng, n_rounds, per_round, median, spread, drift=0.0):
    # each round shares a machine state (drift), runs within it vary log-normally
    return [list(median * (1 + drift * rng.standard_normal()) * rng.lognormal(0, spread, per_round)) for _ in range(n_rounds)]


def test_same_distribution_is_not_called_different():
    rng = np.random.default_rng(1)
    a = _rounds(rng, 20, 10, 10.0, 0.05)
    b = _rounds(rng, 20, 10, 10.0, 0.05)
    ratio, low, high = bootstrap_ratio(a, b)
    assert low < 1.0 < high and ratio == pytest.approx(1.0, abs=0.03)


def test_a_real_speedup_is_detected_with_a_tight_interval():
    rng = np.random.default_rng(2)
    ratio, low, high = bootstrap_ratio(_rounds(rng, 20, 10, 10.0, 0.05), _rounds(rng, 20, 10, 4.0, 0.05))
    assert high < 1.0 and low > 0.35 and ratio == pytest.approx(0.4, abs=0.02)


def test_a_noisy_machine_gives_no_significant_difference_rather_than_a_false_regression():
    rng = np.random.default_rng(3)
    # B is truly 3% slower, but round-to-round drift of 30% drowns it: the interval must straddle 1
    a = _rounds(rng, 8, 5, 10.0, 0.3, drift=0.3)
    b = _rounds(rng, 8, 5, 10.3, 0.3, drift=0.3)
    _, low, high = bootstrap_ratio(a, b)
    c = Comparison(1.03, low, high, 0.95, 8, 5, 10.0, 10.3)
    assert c.verdict == "no significant difference"


def test_unequal_rounds_are_refused():
    with pytest.raises(ValueError, match="same, non-zero number of rounds"):
        bootstrap_ratio([[1.0]], [[1.0], [2.0]])


def test_compare_command_on_float_and_int8_artifacts(cli, tmp_path, digits_onnx):
    from edgesmith.compress import PassContext, build_pass_config, get_pass
    from edgesmith.data import load_dataset
    from edgesmith.profiles import load_profile
    from edgesmith.recipe import InputSpec

    spec = [InputSpec(name="input", shape=["batch", 1, 8, 8])]
    calib = load_dataset("digits", spec, role="calibration", samples=64)
    ctx = PassContext(work_dir=tmp_path, profile=load_profile("x86-avx512-vnni-ort"), input_specs=tuple(spec), calibration=calib)
    q = get_pass("ptq_int8").apply(digits_onnx, build_pass_config("ptq_int8", {}), ctx)
    result = cli("compare", digits_onnx, q, "--rounds", "5", "--per-round", "5", "--threads", "1", "--json")
    assert result.code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["low"] <= out["ratio"] <= out["high"] and out["rounds"] == 5
    if out["machine"]["busy"]:  # 5 rounds of 5 calls: one slow round reads as contention (the round spread), and is said so
        assert out["verdict"] == "not judged: the machine was busy" and out["machine"]["reasons"], out
    else:
        assert out["verdict"] in {"B is faster", "B is slower", "no significant difference"}
