"""`edgesmith baseline save` + `edgesmith check` end to end, on real runs and on synthetic edits of them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.gate.conftest import reseal

TARGET = "x86-avx512-vnni-ort"


def _findings(out: Path) -> dict[str, dict]:
    return {f["metric"]: f for f in json.loads((out / "check.json").read_text())["findings"]}


def test_baseline_records_what_the_gate_needs(baseline):
    data = json.loads(baseline.read_text())
    t = data["targets"][TARGET]
    assert data["format"] == "edgesmith-baseline/2" and len(data["digest"]) == 64
    bar = t["bar"]  # the whole bar is frozen: profile content, rules with units and directions, the data's content
    assert bar["profile"]["gate"]["latency_ratio"] and bar["profile"]["batch_sizes"] == [1, 8] and len(bar["profile_sha256"]) == 64
    assert bar["rules"]["top1"] == {
        "metric": "top1",
        "direction": "higher",
        "tolerance": 0.5,
        "unit": "abs",
        "optional": False,
        "source": "profile budget max-degradation",
    }
    assert set(bar["rules"]) >= {"cosine", "output_fidelity", "decision_agreement"}
    assert bar["data"]["samples"] == 600 and len(bar["data"]["sha256"]) == 64 and bar["metric"] == "top1"
    assert list((baseline.parent / "baseline.history").glob("*.json"))  # the accepted baseline, kept for --history
    assert data["identity"]["recipe name"] == "gate-digits" and data["versions"]["onnxruntime"]
    assert t["metrics"]["top1"] > 97 and t["samples"]["n"] == 600
    lat = t["latency"]["compressed"]["1"]
    # every sample: 60 per measurement, and an inconclusive latency budget is measured again (rounds pooled)
    assert len(lat["times_ms"]) == lat["iterations"] and lat["iterations"] % 60 == 0
    [f] = t["artifact"]["files"]
    copy = baseline.parent / f["path"]
    assert copy.is_file() and copy.stat().st_size == f["bytes"]


def test_identical_runs_pass(cli, gate_runs, baseline, tmp_path):
    out = tmp_path / "gate"
    r = cli("check", gate_runs["again"], "--baseline", baseline, "--out", out)
    assert r.code == 0, r.stdout + r.stderr
    found = _findings(out)
    assert found["top1"]["status"] == "pass" and found["top1"]["detail"] == "unchanged"
    assert found["artifact_mb"]["status"] == "pass"
    lat = found["latency p50 (batch 1)"]
    assert lat["status"] in ("pass", "inconclusive")  # identical artifacts: never a failure
    assert "re-timed interleaved" in lat["detail"]
    assert (out / "junit.xml").is_file() and (out / "report.html").is_file()
    # an unchanged run passes; on a machine the parallel tests keep busy the timing may not decide, and then says so
    first = (out / "summary.md").read_text().splitlines()[0]
    assert "PASS" in first or ("INCONCLUSIVE" in first and lat["status"] == "inconclusive" and "inconclusive" in r.stderr)


def test_injected_accuracy_regression_is_caught(cli, gate_runs, baseline, tmp_path):
    out = tmp_path / "gate"
    r = cli("check", gate_runs["worse"], "--baseline", baseline, "--out", out, "--rounds", "6", "--per-round", "5")
    assert r.code == 1, r.stdout + r.stderr
    found = _findings(out)
    top1 = found["top1"]
    assert top1["status"] == "fail" and top1["baseline"] - top1["now"] > 0.5
    assert "paired test on 600 samples" in top1["detail"] and "McNemar" in top1["detail"]
    assert found["cosine"]["status"] == "fail"
    summary = (out / "summary.md").read_text()
    first_row = next(line for line in summary.splitlines() if line.startswith(f"| {TARGET}"))
    assert "❌ fail" in first_row  # worst first
    assert "pass ptq_int8: calibration 'minmax' -> 'percentile'" in summary  # what changed is named
    assert "<failure" in (out / "junit.xml").read_text()


def test_small_accuracy_difference_is_called_sampling_noise(cli, gate_runs, baseline, variant, tmp_path):
    def one_sample_worse(m):
        t = m["targets"][TARGET]
        bits = np.unpackbits(np.frombuffer(bytes.fromhex(t["samples"]["top1_correct"]), dtype=np.uint8))
        bits[int(np.argmax(bits[:600]))] = 0  # one sample that was right is now wrong
        t["samples"]["top1_correct"] = np.packbits(bits).tobytes().hex()
        t["metrics"]["top1"] -= 100 / 600

    run = variant(gate_runs["again"], one_sample_worse)
    out = tmp_path / "gate"
    # latency is not this test's subject: a 2x allowance keeps two runs' timing noise out of its exit code
    assert cli("check", run, "--baseline", baseline, "--out", out, "--no-remeasure", "--latency-tolerance", "1.0").code == 0
    top1 = _findings(out)["top1"]
    assert top1["status"] == "pass" and "paired test on 600 samples (1 now wrong, 0 now right)" in top1["detail"], top1


FP32_TIMES = [2.0 + 0.01 * np.sin(i) for i in range(100)]  # the same FP32 reference in both runs: no drift


def _set_times(t: dict, batch: str, times: np.ndarray) -> None:
    s = t["latency"]["compressed"][batch]
    s.update(times_ms=[float(x) for x in times], p50_ms=float(np.median(times)), rounds=10)
    t["latency"]["fp32"][batch].update(times_ms=FP32_TIMES, p50_ms=float(np.median(FP32_TIMES)), rounds=10)


def _synthetic(gate_runs, baseline, variant, base_times, now_times):
    """Baseline and run with the given latency samples (batch 1 and 8 alike)."""

    def edit(times):
        def f(m):
            for b in ("1", "8"):
                _set_times(m["targets"][TARGET], b, times)

        return f

    data = json.loads(baseline.read_text())
    for b in ("1", "8"):
        _set_times(data["targets"][TARGET], b, base_times)
    reseal(baseline, data)
    return variant(gate_runs["again"], edit(now_times))


def test_noisy_latency_is_inconclusive_not_a_failure(cli, gate_runs, baseline, variant, tmp_path):
    rng = np.random.default_rng(1)
    base = rng.lognormal(np.log(1.0), 0.6, 100)
    now = rng.lognormal(np.log(1.12), 0.6, 100)  # maybe slower, but the machine is far too noisy to say
    run = _synthetic(gate_runs, baseline, variant, base, now)
    out = tmp_path / "gate"
    r = cli("check", run, "--baseline", baseline, "--out", out, "--no-remeasure")
    assert r.code == 0, r.stdout + r.stderr
    lat = _findings(out)["latency p50 (batch 1)"]
    assert lat["status"] == "inconclusive" and "INCONCLUSIVE" in lat["detail"] and "recorded distribution" in lat["detail"]
    assert "inconclusive" in (out / "summary.md").read_text()
    assert '<skipped message="inconclusive' in (out / "junit.xml").read_text()
    assert cli("check", run, "--baseline", baseline, "--out", out, "--no-remeasure", "--strict").code == 1


def test_clear_latency_regression_fails(cli, gate_runs, baseline, variant, tmp_path):
    rng = np.random.default_rng(2)
    run = _synthetic(gate_runs, baseline, variant, rng.normal(1.0, 0.01, 100), rng.normal(1.5, 0.015, 100))
    out = tmp_path / "gate"
    assert cli("check", run, "--baseline", baseline, "--out", out, "--no-remeasure").code == 1
    lat = _findings(out)["latency p50 (batch 1)"]
    assert lat["status"] == "fail" and lat["delta"].startswith("1.5")


def test_size_and_memory_regressions_fail(cli, gate_runs, baseline, variant, tmp_path):
    def grow(m):
        m["targets"][TARGET]["metrics"]["artifact_mb"] *= 4
        m["targets"][TARGET]["metrics"]["peak_memory_mb"] += 100

    out = tmp_path / "gate"
    assert cli("check", variant(gate_runs["again"], grow), "--baseline", baseline, "--out", out, "--no-remeasure").code == 1
    found = _findings(out)
    assert found["artifact_mb"]["status"] == "fail" and found["peak_memory_mb"]["status"] == "fail"


def test_without_the_baseline_artifact_it_compares_recorded_latency_and_says_so(cli, gate_runs, baseline, tmp_path):
    for f in (baseline.parent / "baseline.artifacts").rglob("*.onnx"):
        f.write_bytes(f.read_bytes()[:-10] + b"0123456789")  # hash no longer matches: not the baseline's artifact
    data = json.loads(baseline.read_text())
    for f in data["targets"][TARGET]["artifact"]["files"]:
        f["run_path"] = "/nonexistent/model.onnx"
    reseal(baseline, data)
    out = tmp_path / "gate"
    # the subject is what latency is compared with, not its verdict: a tolerance no timing can break
    assert cli("check", gate_runs["again"], "--baseline", baseline, "--out", out, "--latency-tolerance", "1.0").code == 0
    lat = _findings(out)["latency p50 (batch 1)"]
    assert "compared with the recorded distribution (no copy of the baseline artifact with the recorded hash" in lat["detail"]


def test_baseline_from_another_recipe_is_refused_unless_forced(cli, gate_runs, baseline, variant, tmp_path):
    def rename(m):
        m["recipe"]["name"] = "other-recipe"
        m["data"]["evaluation"]["samples"] = 300

    run = variant(gate_runs["again"], rename)
    r = cli("check", run, "--baseline", baseline, "--out", tmp_path / "gate", "--no-remeasure")
    assert r.code == 2 and len(r.error_lines) == 1
    assert "recipe name: baseline 'gate-digits', now 'other-recipe'" in r.stderr and "evaluation data" in r.stderr and "--force" in r.stderr
    assert not (tmp_path / "gate" / "check.json").exists()
    r = cli("check", run, "--baseline", baseline, "--out", tmp_path / "gate", "--no-remeasure", "--force", "--latency-tolerance", "1.0")
    assert r.code == 1  # forced past the identity, but the data changed: the bar moved, and that fails unless accepted
    bar = [f for f in json.loads((tmp_path / "gate" / "check.json").read_text())["findings"] if f["kind"] == "bar"]
    assert [f["detail"].split(":")[0] for f in bar] == ["data.samples"] and all(f["status"] == "fail" for f in bar)
    args = ("check", run, "--baseline", baseline, "--out", tmp_path / "gate", "--no-remeasure", "--force", "--latency-tolerance", "1.0", "--accept-bar-change")
    r = cli(*args)
    summary = (tmp_path / "gate" / "summary.md").read_text()
    assert r.code == 0 and "Forced" in summary and "The bar was changed" in summary and "data.samples: 600 -> 300" in summary


def test_target_the_baseline_lacks_is_reported_not_crashed_on(cli, gate_runs, baseline, tmp_path):
    data = json.loads(baseline.read_text())
    data["targets"]["arm-cortex-a72-ort"] = data["targets"].pop(TARGET)
    reseal(baseline, data)
    out = tmp_path / "gate"
    r = cli("check", gate_runs["again"], "--baseline", baseline, "--out", out, "--no-remeasure")
    assert r.code == 1  # the baseline's target is missing from the run
    statuses = {(f["target"], f["status"]) for f in json.loads((out / "check.json").read_text())["findings"]}
    assert (TARGET, "new") in statuses and ("arm-cortex-a72-ort", "missing") in statuses


@pytest.mark.parametrize("case", ["missing", "corrupt", "not-a-baseline"])
def test_bad_baseline_is_one_line_exit_2(cli, gate_runs, tmp_path, case):
    path = tmp_path / "baseline.json"
    if case == "corrupt":
        path.write_text('{"format": "edgesmith-baseline/1", "targets": {')
    elif case == "not-a-baseline":
        path.write_text('{"hello": 1}')
    r = cli("check", gate_runs["again"], "--baseline", path, "--out", tmp_path / "gate")
    assert r.code == 2 and len(r.error_lines) == 1 and "hint:" in r.stderr, r.stderr
    assert {"missing": "baseline not found", "corrupt": "not valid JSON", "not-a-baseline": "is not an edgesmith baseline"}[case] in r.stderr
    assert not (tmp_path / "gate").exists()


def test_run_directory_without_manifest_is_refused(cli, baseline, tmp_path):
    (tmp_path / "half-run").mkdir()
    for args in (("check", tmp_path / "half-run", "--baseline", baseline), ("baseline", "save", tmp_path / "half-run", "--to", tmp_path / "b.json")):
        r = cli(*args)
        assert r.code == 2 and "has no manifest.json" in r.stderr, r.stderr
    assert not (tmp_path / "b.json").exists()


def test_step_summary_goes_to_github_actions(cli, gate_runs, baseline, tmp_path):
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")
    r = cli(
        "check",
        gate_runs["again"],
        "--baseline",
        baseline,
        "--out",
        tmp_path / "gate",
        "--no-remeasure",
        "--latency-tolerance",
        "1.0",
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )  # timing noise is not the subject
    assert r.code == 0, r.stdout + r.stderr
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "## edgesmith check: PASS" in text
