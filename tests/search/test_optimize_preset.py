"""optimize as the search's preset: the training space, when its best replaces the post-training pick,
and the inputs a training budget cannot work with."""

from __future__ import annotations

import numpy as np

from edgesmith.optimize import preset
from edgesmith.search.result import SearchResult, TrialRecord
from edgesmith.search.space import parse_space


def test_the_training_space_crosses_training_passes_with_the_post_training_pick():
    sp = parse_space(preset.space(10, {"type": "ptq_int8", "per_channel": True, "activation_type": "uint8"}))
    labels = sorted(sp.label(v) for v in sp.grid())
    assert len(labels) == 12
    assert "prune_channels, ratio=0.5, ptq_int8=on" in labels and "binarize, ptq_int8=off" in labels and "no pass, ptq_int8=on" in labels
    first = [sp.concrete(v)[0] for v in sp.grid() if sp.concrete(v)]
    assert all(p["recover"]["epochs"] == 10 for p in first if p["type"] in ("prune_channels", "binarize"))


def _result(best: TrialRecord | None) -> SearchResult:
    return SearchResult(None, [best] if best else [], [best] if best else [], best, [], "top1", {}, {}, "pass" if best else "fail")


def test_the_training_search_replaces_the_pick_only_when_surely_faster_than_fp32_and_faster_than_the_pick():
    t = TrialRecord(3, {}, "prune_channels, ratio=0.7, ptq_int8=off", "complete", 99.0, 0.1, 0.1, speedup=1.8, low=1.7, high=1.9, feasible=True)
    chosen, why = preset.pick(_result(t), 1.5)
    assert chosen is t and "1.80x FP32" in why
    assert preset.pick(_result(t), 1.9)[0] is None  # the pick is faster
    unsure = TrialRecord(3, {}, "x", "complete", 99.0, 0.1, 0.1, speedup=1.3, low=0.95, high=1.6, feasible=True)
    assert "not surely faster than FP32" in preset.pick(_result(unsure), None)[1]
    assert "no trial of the training search met every budget" in preset.pick(_result(None), 1.5)[1]


def test_a_training_budget_needs_a_torch_model_and_labelled_data(cli, tmp_path, digits_onnx):
    r = cli("optimize", digits_onnx, "-d", "digits", "--train-budget", "2", "--out", tmp_path / "o")
    assert r.code == 2 and "training budget needs a PyTorch model" in r.error_lines[0], r.stderr[-1500:]
    x = np.random.default_rng(0).normal(size=(64, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "unlabelled.npz", input=x)
    r = cli(
        "optimize",
        "edgesmith.zoo:pretrained_digits_cnn",
        "-i",
        "input:batch,1,8,8",
        "-d",
        tmp_path / "unlabelled.npz",
        "--metric",
        "fidelity",
        "--train-budget",
        "2",
        "--out",
        tmp_path / "o2",
    )
    assert r.code == 2 and "needs labelled data" in r.error_lines[0], r.stderr[-1500:]


def test_optimize_takes_an_onnx_model_and_writes_nothing_beside_it(cli, tmp_path, digits_onnx, digits_test):
    """Regression: optimize on a .onnx failed ("already ONNX: nothing to export") after the pipeline learned
    to refuse exporting an ONNX file, and its calibration cache was written beside the user's model."""
    import shutil

    model = tmp_path / "mine" / "model.onnx"
    model.parent.mkdir()
    shutil.copy(digits_onnx, model)
    x, y = digits_test
    np.savez(tmp_path / "eval.npz", input=x, labels=y)
    r = cli("optimize", model, "-d", tmp_path / "eval.npz", "--same-runtime", "--out", tmp_path / "o")
    assert r.code == 0, r.stderr[-1500:]
    assert sorted(p.name for p in model.parent.iterdir()) == ["model.onnx"]
