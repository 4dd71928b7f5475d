"""The gate passes nothing it did not verify: every file against the manifest's hashes, the manifest
against its own digest, no non-finite metric in a run or a baseline."""

import json
import shutil

import pytest

from tests.gate.conftest import reseal

TARGET = "x86-avx512-vnni-ort"


@pytest.fixture
def base_copy(gate_runs, tmp_path):
    dest = tmp_path / "run"
    shutil.copytree(gate_runs["again"], dest)
    return dest


def test_a_degraded_artifact_copied_over_a_good_run_is_refused_naming_the_file(cli, gate_runs, baseline, base_copy):
    art = f"{TARGET}/model.int8.onnx"
    shutil.copyfile(gate_runs["worse"] / art, base_copy / art)
    for args in (
        ("check", base_copy, "--baseline", baseline, "--no-remeasure"),
        ("check", base_copy, "--baseline", baseline),
        ("validate", base_copy),
        ("baseline", "save", base_copy, "--to", base_copy.parent / "b.json"),
    ):
        r = cli(*args)
        assert r.code == 2 and f"{art} of run" in r.stderr and "does not match the hash its manifest recorded" in r.stderr, (args, r.stderr)


def test_edited_metrics_in_a_manifest_are_refused(cli, gate_runs, baseline, tmp_path):
    run = tmp_path / "worse"
    shutil.copytree(gate_runs["worse"], run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["targets"][TARGET]["metrics"]["top1"] = 99.9  # a degraded run dressed up as a good one
    (run / "manifest.json").write_text(json.dumps(manifest))
    r = cli("check", run, "--baseline", baseline, "--no-remeasure")
    assert r.code == 2 and "was modified after the run wrote it" in r.stderr


def test_a_missing_file_is_refused(cli, baseline, base_copy):
    (base_copy / "bundle" / "eval_data.npz").unlink()
    r = cli("check", base_copy, "--baseline", baseline, "--no-remeasure")
    assert r.code == 2 and "bundle/eval_data.npz of run" in r.stderr and "is missing" in r.stderr


@pytest.mark.parametrize("value", ["NaN", "Infinity", '"99"'])
def test_a_baseline_with_non_finite_or_mistyped_metrics_is_refused(cli, gate_runs, baseline, tmp_path, value):
    text = baseline.read_text()
    data = json.loads(text)
    data["targets"][TARGET]["metrics"]["top1"] = "@@"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data).replace('"@@"', value))
    r = cli("check", gate_runs["again"], "--baseline", bad, "--no-remeasure")
    assert r.code == 2 and "changed after it was saved" in r.stderr, r.stderr  # edited by hand: refused on its digest
    reseal(bad, json.loads(bad.read_text()))  # ... and one edgesmith could have written is checked field by field
    r = cli("check", gate_runs["again"], "--baseline", bad, "--no-remeasure")
    assert r.code == 2 and "top1" in r.stderr and ("not a finite number" in r.stderr or "not a number" in r.stderr), r.stderr


def test_a_baseline_with_fields_of_the_wrong_type_is_bad_input_not_a_crash(cli, gate_runs, baseline, tmp_path):
    data = json.loads(baseline.read_text())
    data["targets"][TARGET]["latency"] = [1, 2, 3]
    bad = tmp_path / "bad.json"
    reseal(bad, data)
    r = cli("check", gate_runs["again"], "--baseline", bad, "--no-remeasure")
    assert r.code == 2 and "field 'latency' is list, expected dict" in r.stderr
