"""Every way we know to slip a regression past the gate, each caught; an unchanged run passes.

The candidates are real runs of the digits recipe (conftest) edited the way a pull request could change
them — its profile, its data, its batches, its metrics — and re-sealed as edgesmith would have written
them (a tampered file is test_tamper.py's subject). Latency is not the subject here: ``--no-remeasure``
and a wide latency tolerance keep timing noise out of the exit codes (that tolerance is itself recorded
as a change of the bar set on the command line).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

TARGET = "x86-avx512-vnni-ort"
QUIET = ("--no-remeasure", "--latency-tolerance", "1.0")


def _check(cli, run: Path, baseline: Path, out: Path, *extra) -> tuple[int, dict[tuple[str, str], dict], str]:
    r = cli("check", run, "--baseline", baseline, "--out", out, *QUIET, *extra)
    assert r.code in (0, 1), r.stdout + r.stderr
    found = {(f["kind"], f["metric"]): f for f in _all(out)}
    return r.code, found, r.stdout + r.stderr


def _all(out: Path) -> list[dict]:
    return json.loads((out / "check.json").read_text())["findings"]


def _collapse(t: dict) -> None:
    """What 2-bit weights did to this model: top-1 99 -> 62, cosine 0.9999 -> 0.56, decisions mostly changed."""
    m = t["metrics"]
    m.update(top1=61.8, cosine=0.56, output_fidelity=0.2, decision_agreement=0.6)


def test_loosening_the_candidates_own_profile_does_not_loosen_the_bar(cli, gate_runs, baseline, variant, tmp_path):
    def loosen_and_collapse(m):
        t = m["targets"][TARGET]
        t["profile"]["gate"].update(accuracy_drop=100.0, cosine_drop=1.0, fidelity_drop=1.0, decision_drop=1.0)
        t["profile"]["budgets"] = [g for g in t["profile"]["budgets"] if g["metric"] not in ("top1", "output_fidelity")]
        _collapse(t)

    code, found, _ = _check(cli, variant(gate_runs["again"], loosen_and_collapse), baseline, tmp_path / "gate")
    assert code == 1
    assert found[("accuracy", "top1")]["status"] == "fail" and found[("accuracy", "top1")]["budget"] == "drop <= 0.5 pt"  # the baseline's bar
    for metric in ("cosine", "output_fidelity", "decision_agreement"):
        assert found[("fidelity", metric)]["status"] == "fail", metric
    bar = [f for f in _all(tmp_path / "gate") if f["kind"] == "bar"]
    assert bar and all(f["status"] == "fail" for f in bar) and any("profile.gate.accuracy_drop" in f["detail"] for f in bar)


def test_decisions_that_change_while_cosine_holds_fail(cli, gate_runs, baseline, variant, tmp_path):
    def flip(m):
        m["targets"][TARGET]["metrics"]["decision_agreement"] -= 0.05  # 5% of top-1 answers differ from the float model

    code, found, _ = _check(cli, variant(gate_runs["again"], flip), baseline, tmp_path / "gate")
    assert code == 1 and found[("fidelity", "decision_agreement")]["status"] == "fail"
    assert found[("fidelity", "cosine")]["status"] == "pass"


def test_renaming_the_profile_leaves_the_baselines_target_missing(cli, gate_runs, baseline, variant, tmp_path):
    def rename(m):
        t = m["targets"].pop(TARGET)
        t["profile"]["name"] = "my-laxer-target"
        m["targets"]["my-laxer-target"] = t

    code, _, _ = _check(cli, variant(gate_runs["again"], rename), baseline, tmp_path / "gate")
    statuses = {(f["target"], f["status"]) for f in _all(tmp_path / "gate") if f["metric"] == "target"}
    assert code == 1 and statuses == {(TARGET, "missing"), ("my-laxer-target", "new")}


@pytest.mark.parametrize("metric", ["top1", "decision_agreement", "peak_memory_mb", "artifact_mb"])
def test_a_measure_the_bar_names_and_the_run_lacks_fails(cli, gate_runs, baseline, variant, tmp_path, metric):
    def drop(m):
        del m["targets"][TARGET]["metrics"][metric]

    code, found, _ = _check(cli, variant(gate_runs["again"], drop), baseline, tmp_path / "gate")
    assert code == 1
    [f] = [f for (_, name), f in found.items() if name == metric]
    assert f["status"] == "missing" and "this run" in f["detail"]


def test_a_run_without_latency_at_a_batch_the_bar_times_fails(cli, gate_runs, baseline, variant, tmp_path):
    def fewer_batches(m):
        t = m["targets"][TARGET]
        t["profile"]["batch_sizes"] = [1]
        for kind in ("compressed", "fp32"):
            t["latency"][kind].pop("8", None)
        t["metrics"] = {k: v for k, v in t["metrics"].items() if not k.endswith("@8")}

    code, found, _ = _check(cli, variant(gate_runs["again"], fewer_batches), baseline, tmp_path / "gate")
    assert code == 1
    assert found[("latency", "latency p50 (batch 8)")]["status"] == "missing"
    assert any(f["kind"] == "bar" and "profile.batch_sizes: [1, 8] -> [1]" in f["detail"] for f in _all(tmp_path / "gate"))


def test_other_evaluation_data_is_a_changed_bar(cli, gate_runs, baseline, variant, tmp_path):
    def easier_data(m):
        m["data"]["evaluation"]["sha256"] = "0" * 64  # same name, same count, other content (an easier subset)

    code, found, _ = _check(cli, variant(gate_runs["again"], easier_data), baseline, tmp_path / "gate")
    assert code == 1 and any(f["kind"] == "bar" and f["detail"].startswith("data.sha256") for f in _all(tmp_path / "gate"))
    code, found, text = _check(cli, variant(gate_runs["again"], easier_data, "v2"), baseline, tmp_path / "gate2", "--accept-bar-change")
    assert code == 0 and "accepted" in text and json.loads((tmp_path / "gate2" / "check.json").read_text())["bar_changes"]


def test_a_baseline_loosened_by_hand_is_refused(cli, gate_runs, baseline, tmp_path):
    data = json.loads(baseline.read_text())
    data["targets"][TARGET]["bar"]["rules"]["top1"]["tolerance"] = 50.0
    baseline.write_text(json.dumps(data))
    r = cli("check", gate_runs["again"], "--baseline", baseline, *QUIET)
    assert r.code == 2 and len(r.error_lines) == 1 and "changed after it was saved" in r.stderr


def test_a_slow_drift_passes_each_step_and_fails_over_the_history(cli, gate_runs, variant, tmp_path):
    path = tmp_path / "ci" / "baseline.json"
    steps = []
    for k in range(11):

        def drift(m, k=k):
            m["targets"][TARGET]["metrics"]["top1"] -= 0.3 * k  # 0.3 points a pull request, within the 0.5 tolerance

        steps.append(variant(gate_runs["again"], drift, f"step{k}"))
    for k in range(10):
        assert cli("baseline", "save", steps[k], "--to", path, "--no-artifacts").code == 0  # each step accepted in turn
    code, found, _ = _check(cli, steps[10], path, tmp_path / "one-step")
    assert code == 0 and found[("accuracy", "top1")]["status"] == "pass"
    code, found, _ = _check(cli, steps[10], path, tmp_path / "history", "--history", "10")
    drift = found[("drift", "top1 over the last 10 baselines")]
    assert code == 1 and drift["status"] == "fail" and drift["baseline"] - drift["now"] == pytest.approx(3.0)  # against step 0
    assert "Trend over the last accepted baselines" in (tmp_path / "history" / "summary.md").read_text()
    html = (tmp_path / "history" / "report.html").read_text()
    assert f'id="trend-{TARGET}-top1"' in html and html.count('class="mark" cx=') >= 11  # ten baselines and this run, drawn


def _with_metric(name: str, value: float):
    def edit(m):
        t = m["targets"][TARGET]
        t["metrics"][name] = value
        t["reference_metrics"][name] = 3.0

    return edit


def test_a_lower_is_better_metric_is_judged_the_right_way_round(cli, gate_runs, variant, tmp_path):
    path = tmp_path / "ci" / "baseline.json"
    assert cli("baseline", "save", variant(gate_runs["again"], _with_metric("cer", 3.0), "b"), "--to", path, "--no-artifacts").code == 0
    assert json.loads(path.read_text())["targets"][TARGET]["bar"]["rules"]["cer"]["direction"] == "lower"
    code, found, _ = _check(cli, variant(gate_runs["again"], _with_metric("cer", 4.0), "worse"), path, tmp_path / "g1")
    assert code == 1 and found[("accuracy", "cer")]["status"] == "fail" and found[("accuracy", "cer")]["budget"] == "rise <= 0.5 pt"
    code, found, _ = _check(cli, variant(gate_runs["again"], _with_metric("cer", 2.0), "better"), path, tmp_path / "g2")
    assert code == 0 and found[("accuracy", "cer")]["status"] == "pass"


def test_a_metric_the_gate_does_not_know_must_be_declared_with_a_unit(cli, gate_runs, variant, tmp_path):
    run = variant(gate_runs["again"], _with_metric("my_score", 40.0), "b")
    path = tmp_path / "ci" / "baseline.json"
    r = cli("baseline", "save", run, "--to", path)
    assert r.code == 2 and len(r.error_lines) == 1 and "--metric-rule my_score=higher" in r.stderr and not path.exists()
    r = cli("baseline", "save", run, "--to", path, "--metric-rule", "my_score=higher:0.5")
    assert r.code == 2 and "needs a unit" in r.stderr and not path.exists()
    assert cli("baseline", "save", run, "--to", path, "--metric-rule", "my_score=higher:1%").code == 0
    code, found, _ = _check(cli, variant(gate_runs["again"], _with_metric("my_score", 39.0), "worse"), path, tmp_path / "g")
    assert code == 1 and found[("accuracy", "my_score")]["budget"] == "drop <= 1%"  # 1 of 40 is 2.5%


def test_a_profile_tolerance_without_a_unit_is_refused():
    from pydantic import ValidationError

    from edgesmith.profiles.schema import GateTolerances

    with pytest.raises(ValidationError, match="needs a unit"):
        GateTolerances.model_validate({"metrics": {"bleu": {"direction": "higher", "tolerance": "0.5"}}})
    assert GateTolerances.model_validate({"metrics": {"bleu": {"direction": "higher", "tolerance": "0.5 pt"}}}).metrics["bleu"].tolerance == "0.5 pt"


def test_a_drop_the_paired_test_cannot_decide_is_inconclusive_under_one_policy(cli, gate_runs, baseline, variant, tmp_path):
    def four_worse(m):  # 4 of 600 answers now wrong: 0.67 points, over the 0.5 allowed, within what 600 samples can tell
        t = m["targets"][TARGET]
        bits = np.unpackbits(np.frombuffer(bytes.fromhex(t["samples"]["top1_correct"]), dtype=np.uint8))
        right = np.flatnonzero(bits[:600])[:4]
        bits[right] = 0
        t["samples"]["top1_correct"] = np.packbits(bits).tobytes().hex()
        t["metrics"]["top1"] = 100.0 * float(bits[:600].mean())

    run = variant(gate_runs["again"], four_worse)
    results = {}
    for policy in ("warn", "fail", "pass"):
        code, found, _ = _check(cli, run, baseline, tmp_path / policy, "--inconclusive", policy)
        results[policy] = (code, json.loads((tmp_path / policy / "check.json").read_text())["verdict"])
        assert found[("accuracy", "top1")]["status"] == "inconclusive" and "paired test" in found[("accuracy", "top1")]["detail"]
    assert results == {"warn": (0, "inconclusive"), "fail": (1, "fail"), "pass": (0, "pass")}


def test_two_targets_of_one_name_are_refused_not_collapsed(cli, gate_runs, baseline, tmp_path):
    text = baseline.read_text()
    data = json.loads(text)
    entry = json.dumps(data["targets"][TARGET])
    # a second entry under the same name: json keeps the last one silently, the gate must not
    doubled = tmp_path / "doubled.json"
    doubled.write_text(text.replace('"targets": {', '"targets": {' + json.dumps(TARGET) + ": " + entry + ", ", 1))
    r = cli("check", gate_runs["again"], "--baseline", doubled, *QUIET)
    assert r.code == 2 and len(r.error_lines) == 1 and f"names '{TARGET}' twice" in r.stderr, r.stderr
