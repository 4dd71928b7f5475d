"""Speed claims that hold: a ratio between runtimes agrees with plain timing of the same two models, a
race beside a CPU hog either keeps its claim true or withholds it, and the busy-machine record (its
arithmetic, the judge, optimize's choice) on made-up snapshots."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks.plain_timing import plain_ratio
from edgesmith.runtime.contention import Snapshot, assess, merged, round_spread


@pytest.fixture(scope="module")
def two_runtimes(digits_onnx, tmp_path_factory):
    """The digits CNN (about 20 us: per-call overhead dominates) compiled for ONNX Runtime and OpenVINO."""
    from edgesmith.profiles import load_profile
    from edgesmith.runtime import get_backend

    pytest.importorskip("openvino")
    d = tmp_path_factory.mktemp("two-runtimes")
    ort = get_backend("onnxruntime").compile(digits_onnx, d / "m.onnx", load_profile("x86-avx512-vnni-ort"))
    ov = get_backend("openvino").compile(digits_onnx, d / "m.xml", load_profile("x86-avx512-vnni-ov"))
    return ort, ov


def _feeds(digits_onnx):
    return {"input": np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)}


def test_cross_runtime_ratio_agrees_with_plain_timing(two_runtimes, digits_onnx):
    """OpenVINO's speed over ONNX Runtime as optimize's race measures it (both in one child, interleaved,
    12 rounds of 10) against each runtime timed alone with its plain API. With inputs bound once and
    OpenVINO's own latency, the race had said 0.7-0.9x where plain calls gave 0.36-0.45x."""
    from edgesmith.runtime.bench import run_worker

    ort, ov = two_runtimes
    from edgesmith.model_io import onnx_input_specs

    feeds = {onnx_input_specs(ort.path)[0]["name"]: _feeds(digits_onnx)["input"]}
    # NOTE: microsecond timings on a shared 2-core machine: one attempt can disagree by chance (CI measured
    # 0.63 once), a method that is biased disagrees every time; so up to 3 attempts, and any agreement passes
    # A timing beside other work is biased, not noisy (runtime.contention): such an attempt judges nothing, as
    # edgesmith's own verdicts do; CI shares its cores, so every attempt busy is a skip, never a failure.
    seen, busy = [], []
    for _ in range(4):
        res_ort, res_ov = run_worker([ort, ov], feeds, 2, 10, 120, None, 12, raw=True)
        assert res_ort["timing"] == "call" and res_ort["machine"]["threads"] == 2
        if res_ort["machine"].get("busy") or res_ov["machine"].get("busy"):
            busy.append("; ".join(res_ort["machine"].get("reasons") or ["busy"]))
            time.sleep(2)
            continue
        race = res_ort["p50_ms"] / res_ov["p50_ms"]
        # the plain side: each runtime in a process of its own with its own API (benchmarks/plain_timing.py)
        plain = plain_ratio(ort.path, ov.path, feeds)
        seen.append(f"race {race:.2f}x vs plain {plain:.2f}x ({res_ort['p50_ms'] * 1e3:.1f} / {res_ov['p50_ms'] * 1e3:.1f} us)")
        if 0.7 < race / plain < 1.45:
            return
    if not seen:
        pytest.skip(f"the machine was busy in every attempt ({busy[0]}): a biased timing judges nothing")
    raise AssertionError("the race's OpenVINO/ONNX Runtime ratio disagreed with plain timing in every quiet attempt: " + "; ".join(seen))


def test_race_beside_a_cpu_hog_keeps_its_claim_true_or_withholds_it(two_runtimes, digits_onnx):
    """One other process spinning on one of the 2 cores while the race runs. Either the machine is found
    busy (and nothing is claimed), or the claimed interval contains the speed measured on a quiet machine."""
    from edgesmith.model_io import onnx_input_specs
    from edgesmith.runtime.bench import run_worker
    from edgesmith.runtime.compare import bootstrap_ratio

    ort, ov = two_runtimes
    feeds = {onnx_input_specs(ort.path)[0]["name"]: _feeds(digits_onnx)["input"]}
    split = lambda t: [t[i * 10 : (i + 1) * 10] for i in range(12)]  # noqa: E731
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        a, b = run_worker([ort, ov], feeds, 2, 10, 120, None, 12, raw=True)
    finally:
        hog.kill()
        hog.wait()
    machine = a["machine"]
    if machine["busy"]:
        assert machine["others_cores"] > 0.5 and machine["reasons"]
        return
    _, low, high = bootstrap_ratio(split(b["times_ms"]), split(a["times_ms"]))
    time.sleep(0.5)
    qa, qb = run_worker([ort, ov], feeds, 2, 10, 120, None, 12, raw=True)
    truth = qa["p50_ms"] / qb["p50_ms"]
    assert low * 0.9 <= truth <= high * 1.1, f"claimed {low:.2f}-{high:.2f} beside the hog; quiet machine: {truth:.2f}"


def test_hog_makes_the_pipeline_judge_nothing_on_time(tmp_path, digits_onnx, monkeypatch):
    """time_against_float beside a hog: it waits for quiet (shortened here), times again, and when the
    machine stays busy the latency budget is inconclusive with the reason — never a pass or a fail."""
    from edgesmith.evaluate import judge, time_against_float
    from edgesmith.profiles import load_profile
    from edgesmith.runtime import contention
    from edgesmith.runtime.bench import artifact_for

    monkeypatch.setattr(contention, "QUIET_WAIT_S", 0.5)
    monkeypatch.setenv("EDGESMITH_BUSY_RETRIES", "2")  # the suite's 0 would skip the timing again
    art, specs = artifact_for(digits_onnx)
    profile = load_profile("x86-avx512-vnni-ort")
    metrics: dict = {}
    reference: dict = {}
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        latency = time_against_float(art, art, specs, profile, None, metrics, reference, iterations=60)
    finally:
        hog.kill()
        hog.wait()
    rec = latency["compressed"][1]["machine"]
    timed = [v for v in judge(profile, metrics, reference, latency) if v.metric.startswith(("latency", "speedup"))]
    assert timed
    if rec["busy"]:
        assert all(v.status == "inconclusive" and "busy" in v.detail for v in timed)
    else:  # the hog lost the race for the cores: a quiet measurement is judged as usual
        assert all(v.status in ("pass", "fail", "inconclusive") for v in timed)


def test_timing_settings_come_from_the_environment_and_a_bad_value_is_refused(monkeypatch):
    from edgesmith.errors import ConfigError
    from edgesmith.runtime.contention import busy_retries

    monkeypatch.delenv("EDGESMITH_BUSY_RETRIES", raising=False)
    assert busy_retries() == 2
    monkeypatch.setenv("EDGESMITH_BUSY_RETRIES", "0")
    assert busy_retries() == 0
    for bad in ("-1", "two", "1.5"):
        monkeypatch.setenv("EDGESMITH_BUSY_RETRIES", bad)
        with pytest.raises(ConfigError, match="EDGESMITH_BUSY_RETRIES must be a whole number"):
            busy_retries()
    from edgesmith.runtime.contention import wait_for_quiet

    for bad in ("-1", "soon", "nan"):
        monkeypatch.setenv("EDGESMITH_QUIET_WAIT_S", bad)
        with pytest.raises(ConfigError, match="EDGESMITH_QUIET_WAIT_S must be a number >= 0"):
            wait_for_quiet(1)


@pytest.mark.parametrize(
    "name, read",
    [
        ("EDGESMITH_DATA_MEMORY_MB", "edgesmith.data.stream:memory_budget"),
        ("EDGESMITH_DECODE_THREADS", "edgesmith.data.stream:decode_threads"),
        ("EDGESMITH_BNN_THREADS", "edgesmith.runtime.ops.binary_conv:_threads"),
        ("EDGESMITH_BNN_THREADS", "edgesmith.runtime.ops.binary_conv:openvino_extension"),  # C++ reads it too
    ],
)
def test_every_numeric_setting_refuses_what_it_cannot_mean(monkeypatch, name, read):
    """They fell back to the default or clamped a bad value silently (EDGESMITH_DATA_MEMORY_MB=-1 read as 1 MB)."""
    from edgesmith.errors import ConfigError
    from edgesmith.model_io import import_object

    fn = import_object(read, "setting")
    if not read.endswith("openvino_extension"):
        monkeypatch.setenv(name, "3")
        assert fn() in (3, 3 << 20)
    for bad in ("0", "-1", "lots", "2.5", "inf", *(["100000"] if "BNN" in name else [])):
        monkeypatch.setenv(name, bad)
        with pytest.raises(ConfigError, match=rf"{name} must be a whole number (>= 1|in \[1, 1024\]), got '{bad}'"):
            fn()


def _snap(wall, cpu, busy, steal=0.0, total=None):
    return Snapshot(wall, cpu, busy, steal, total if total is not None else 2 * wall, 0.5)


def test_assess_counts_other_processes_cpu_time_in_cores():
    # 10 s of wall time on 2 cores; this process used 19 s of CPU, the host 19.5 s: others 0.05 cores -> quiet
    quiet = assess(_snap(0, 0, 0, total=0), _snap(10, 19, 19.5, total=20), threads=2, cpus=2)
    assert not quiet.busy and quiet.others_cores == pytest.approx(0.05) and quiet.describe() == "quiet"
    # the host was busy 29 s: others used 1 core of the 2 our 2 threads needed -> busy, with the reason
    busy = assess(_snap(0, 0, 0, total=0), _snap(10, 19, 29, total=20), threads=2, cpus=2)
    assert busy.busy and busy.others_cores == pytest.approx(1.0) and "1.00 cores" in busy.reasons[0]
    # the same 1 core of other work on a 16-core host with 2 threads timed: there was room -> quiet
    assert not assess(_snap(0, 0, 0, total=0), _snap(10, 19, 29, total=160), threads=2, cpus=16).busy
    # hypervisor steal above 5% of the CPU time
    stolen = assess(_snap(0, 0, 0, 0, total=0), _snap(10, 18, 18, steal=2.0, total=20), threads=2, cpus=2)
    assert stolen.busy and stolen.steal == pytest.approx(0.1) and "steal" in stolen.reasons[0]
    # drift between rounds alone
    assert assess(_snap(0, 0, 0, total=0), _snap(10, 19, 19, total=20), threads=2, cpus=2, round_cv=0.8).busy


def test_round_spread_and_merge():
    steady = [[1.0] * 30, [2.0] * 30]
    assert round_spread(steady, 3) == 0.0 and round_spread(steady, 2) is None
    drifting = [[1.0] * 10 + [2.0] * 10 + [4.0] * 10]
    assert round_spread(drifting, 3) == pytest.approx(np.std([1, 2, 4], ddof=1) / np.mean([1, 2, 4]))
    m = merged([{"busy": False, "others_cores": 0.0, "reasons": []}, {"busy": True, "others_cores": 1.0, "reasons": ["x"]}])
    assert m["busy"] and m["reasons"] == ["x"] and merged([None]) is None


def test_judge_rules_nothing_on_a_busy_batch():
    from edgesmith.evaluate import judge
    from edgesmith.profiles import load_profile

    profile = load_profile("x86-avx512-vnni-ort")
    metrics = {"speedup_vs_fp32@1": 3.0, "speedup_vs_fp32_low@1": 2.5, "speedup_vs_fp32_high@1": 3.5, "top1": 0.98}
    reference = {"speedup_vs_fp32@1": 1.0, "top1": 0.98}
    quiet = {"compressed": {1: {"machine": {"busy": False, "reasons": []}}}}
    busy = {"compressed": {1: {"machine": {"busy": True, "reasons": ["other processes used 1.00 cores"]}}}}
    speed = lambda lat: next(v for v in judge(profile, metrics, reference, lat) if v.metric == "speedup_vs_fp32")  # noqa: E731
    assert speed(quiet).status == "pass" and speed(None).status == "pass"
    v = speed(busy)
    assert v.status == "inconclusive" and "1.00 cores" in v.detail


def test_optimize_claims_nothing_from_a_busy_race():
    from edgesmith.compress.quantize.policy import Plan
    from edgesmith.engine import TrialRecord
    from edgesmith.optimize.search import _choose

    def trial(name, runtime, pass_type, speedup, low, high, **kw):
        return TrialRecord(0, {}, name, "complete", speedup=speedup, low=low, high=high, status="ok", plan=Plan(name, runtime, pass_type, {}, ""), **kw)

    fp32 = trial("fp32", "onnxruntime", None, 1.0, 0.9, 1.1)
    int8 = trial("int8", "onnxruntime", "ptq_int8", 7.5, 4.3, 9.6, metrics={"cosine": 0.999})
    ov = trial("fp32-ov", "openvino", None, 2.9, 2.0, 3.5)
    win, why = _choose([fp32, int8, ov], "onnxruntime", {"busy": True, "reasons": ["other processes used 0.90 cores"]})
    assert win is fp32 and "NOT CLAIMED" in why and "0.90 cores" in why and "INCONCLUSIVE" in why  # nothing unconfirmed is shipped
    assert int8.low is None and ov.low is None  # no interval survives a biased measurement
    # nothing above 1 on the target's own runtime: FP32 is kept, not the other runtime's float model
    fp32b = trial("fp32", "onnxruntime", None, 1.0, 0.9, 1.1)
    ovb = trial("fp32-ov", "openvino", None, 2.9, 2.0, 3.5)
    slow = trial("int8", "onnxruntime", "ptq_int8", 0.8, 0.7, 0.9)
    win, why = _choose([fp32b, ovb, slow], "onnxruntime", {"busy": True, "reasons": ["r"]})
    assert win is fp32b and "float model is kept" in why


def test_the_float_model_timed_against_itself_is_exactly_1x(digits_onnx, tmp_path, two_runtimes):
    """A run that changes nothing (and a search trial with every pass off) compares the float model with
    itself: its speed-up is 1 by definition. Measured, it was noise around 1 — a `speedup >= 1` budget then
    failed such a run at random (the search's best trial, FP32, failed its own full run once: 0.97x)."""
    import json

    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe
    from edgesmith.runtime.base import Artifact, same_model

    recipe = {"model": {"source": str(digits_onnx)}, "passes": [], "targets": ["x86-avx512-vnni-ort"], "bench": {"iterations": 20}}
    pipeline.run(parse_recipe(recipe), tmp_path, out_dir=tmp_path / "out")
    t = json.loads((tmp_path / "out" / "manifest.json").read_text())["targets"]["x86-avx512-vnni-ort"]
    m = t["metrics"]
    assert m["speedup_vs_fp32@1"] == m["speedup_vs_fp32_low@1"] == m["speedup_vs_fp32_high@1"] == 1.0
    speed = next(v for v in t["verdicts"] if v["metric"] == "speedup_vs_fp32")
    busy = any((rec.get("machine") or {}).get("busy") for rec in t["latency"]["compressed"].values())
    assert speed["status"] == "pass" or (busy and speed["status"] != "fail"), speed  # a busy machine: nothing is ruled on time
    ort, ov = two_runtimes
    assert same_model(ort, Artifact(ort.path, ort.backend, dict(ort.options)))
    assert not same_model(ort, ov) and not same_model(ort, Artifact(digits_onnx, ort.backend, dict(ort.options)))
