"""nncf_ptq with NNCF's accuracy control: validates top-1 on labelled data, reports what it did."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("nncf")


def _recipe(tmp_path, **opts):
    from edgesmith.recipe import parse_recipe

    return parse_recipe(
        {
            "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
            "data": {"calibration": {"source": "digits", "samples": 128}, "evaluation": {"source": "digits", "split": "test"}},
            "passes": [{"type": "nncf_ptq", "accuracy_control": True, **opts}],
            "targets": [{"profile": "x86-avx512-vnni-ov", "batch_sizes": [1]}],
            "bench": {"iterations": 10},
            "output_dir": "out",
        },
        "test",
    )


def test_accuracy_control_runs_and_reports(tmp_path):
    from edgesmith import pipeline

    pipeline.run(_recipe(tmp_path, max_drop=0.2, validation="evaluation"), tmp_path)
    t = json.loads((tmp_path / "out" / "manifest.json").read_text())["targets"]["x86-avx512-vnni-ov"]
    ac = t["details"]["nncf_accuracy_control"]
    assert ac["max_drop_pt"] == 0.2 and ac["validation"] == "evaluation"
    assert ac["top1_float"] - ac["top1_int8"] <= 0.2 + 1e-9
    assert any("accuracy control on the evaluation data" in n for n in t["notes"])


def test_accuracy_control_needs_labels(tmp_path):
    from edgesmith import pipeline
    from edgesmith.errors import ConfigError
    from edgesmith.recipe import parse_recipe

    x = np.random.default_rng(0).random((64, 1, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "unlabelled.npz", input=x)
    recipe = _recipe(tmp_path).model_dump(mode="json")
    recipe["data"]["calibration"] = {"source": "unlabelled.npz"}
    recipe["passes"] = [p.as_yaml() for p in _recipe(tmp_path).passes]
    with pytest.raises(ConfigError, match="needs labels in the calibration data"):
        pipeline.run(parse_recipe(recipe, "test"), tmp_path)
