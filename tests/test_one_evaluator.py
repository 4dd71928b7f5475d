"""One evaluator: the same artifact judged through run, tune, optimize and the device-side validate
gives identical numbers; the float reference outputs are cached on disk by content hash."""

import json

import pytest

from edgesmith.recipe import parse_recipe

SETTINGS = {"calibration": "minmax", "per_channel": True}


def _recipe(out):
    return parse_recipe(
        {
            "name": "one-evaluator",
            "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
            "data": {"calibration": {"source": "digits", "split": "train", "samples": 128}, "evaluation": {"source": "digits", "split": "test"}},
            "metric": "top1",
            "passes": [{"type": "ptq_int8", **SETTINGS}],
            "targets": [{"profile": "x86-avx512-vnni-ort", "batch_sizes": [1]}],
            "bench": {"iterations": 20, "warmup": 2},
            "output_dir": str(out),
        }
    )


@pytest.mark.slow
def test_run_tune_optimize_and_validate_give_identical_numbers(tmp_path, cli, monkeypatch):
    from edgesmith import pipeline
    from edgesmith.compress.quantize.policy import Plan
    from edgesmith.optimize import optimize
    from edgesmith.tune import tune

    monkeypatch.setenv("EDGESMITH_CACHE_DIR", str(tmp_path / "cache"))
    run = pipeline.run(_recipe(tmp_path / "run"), tmp_path).manifest["targets"]["x86-avx512-vnni-ort"]["metrics"]
    tuned = tune(_recipe(tmp_path / "tune"), tmp_path, time_budget_s=1.0).candidates[0]
    assert tuned.params == SETTINGS
    opt = optimize(
        _recipe(tmp_path / "opt"),
        tmp_path,
        other_runtimes=False,
        plans=[Plan("float", "onnxruntime", None), Plan("int8", "onnxruntime", "ptq_int8", dict(SETTINGS))],
    )
    trial = next(t for t in opt.trials if t.plan.pass_type == "ptq_int8")
    r = cli("validate", tmp_path / "run", "--json")
    assert r.code == 0, r.stderr
    device = json.loads(r.stdout)["targets"]["x86-avx512-vnni-ort"]["metrics"]
    for key in ("top1", "cosine", "sqnr_db"):
        assert run[key] == tuned.metrics[key] == trial.metrics[key] == device[key], key


def test_reference_outputs_are_cached_by_content(tmp_path, monkeypatch, digits_onnx, digits_test):
    from edgesmith.data.sources import Dataset, split_batches
    from edgesmith.evaluate import Evaluator
    from edgesmith.runtime import get_backend

    monkeypatch.setenv("EDGESMITH_CACHE_DIR", str(tmp_path / "cache"))
    x, y = digits_test
    ds = Dataset("digits", split_batches({"input": x[:64]}, y[:64], 32))
    ort = get_backend("onnxruntime")
    art = ort.compile(digits_onnx, tmp_path / "fp32.onnx", None)
    first = Evaluator(ds, "top1").reference(ort, art, 1)
    again = Evaluator(ds, "top1").reference(ort, art, 1)
    assert not first.cached and again.cached
    assert all((a == b).all() for a, b in zip(first.outputs, again.outputs))
    other = Dataset("digits", split_batches({"input": x[64:128]}, y[64:128], 32))
    assert not Evaluator(other, "top1").reference(ort, art, 1).cached  # other data: another key
    for entry in (tmp_path / "cache").rglob("*.npz"):
        entry.write_bytes(b"garbage")  # a damaged entry is recomputed, never trusted
    assert not Evaluator(ds, "top1").reference(ort, art, 1).cached
