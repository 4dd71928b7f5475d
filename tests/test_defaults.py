"""Right by default: the first command a user types picks INT8 by the model's structure, unlabelled data
falls back to fidelity, exported outputs keep their names, latency budgets are judged on intervals."""

import json

import numpy as np
import onnx
import pytest

from tests.conftest import NO_SPEEDUP_BUDGET


@pytest.mark.slow
def test_quantize_by_default_picks_int8_from_the_structure_and_says_why(cli, tmp_path):
    r = cli("quantize", "edgesmith.zoo:digits_encoder", "--out", "enc", "--metric", "fidelity")
    assert r.code in (0, 1), r.stderr  # the subject is the choice and its fidelity, not the latency verdict
    m = json.loads((tmp_path / "enc" / "manifest.json").read_text())
    t = next(iter(m["targets"].values()))
    assert m["recipe"]["passes"] == [{"type": "auto_int8"}]
    assert t["details"]["auto_int8"]["pass"] == "dynamic_int8" and t["details"]["auto_int8"]["options"]["op_types"] == ["MatMul"]
    assert any("auto_int8: " in n and "transformer" in n for n in t["notes"])
    assert t["metrics"]["cosine"] > 0.99  # static int8 everywhere gave 0.37 on a (trained) transformer


def test_static_settings_on_the_command_line_mean_static_int8(cli, tmp_path):
    r = cli("quantize", "edgesmith.zoo:pretrained_digits_cnn", "--calibration", "entropy", "--dry-run", "--save-recipe", "r.yaml")
    assert r.code == 0, r.stderr
    assert "type: ptq_int8" in (tmp_path / "r.yaml").read_text() and "calibration: entropy" in (tmp_path / "r.yaml").read_text()


@pytest.mark.slow
def test_unlabelled_data_falls_back_to_fidelity(cli, tmp_path, digits_test):
    x, _ = digits_test
    np.savez(tmp_path / "nolabels.npz", input=x[:64])
    recipe = {
        "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
        "metric": "auto",
        "passes": [{"type": "ptq_int8"}],
        "data": {"calibration": {"source": "nolabels.npz"}, "evaluation": {"source": "nolabels.npz"}},
        "targets": [{"profile": "x86-avx512-vnni-ort", "budgets": NO_SPEEDUP_BUDGET}],
        "bench": {"iterations": 10},
        "output_dir": "out",
    }
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))
    r = cli("run", "r.yaml")
    assert r.code == 0, r.stderr
    metrics = next(iter(json.loads((tmp_path / "out" / "manifest.json").read_text())["targets"].values()))["metrics"]
    assert "top1" not in metrics and metrics["cosine"] > 0.99


def test_exported_outputs_keep_the_models_and_the_recipes_names(tmp_path):
    import torch

    from edgesmith.export import export_onnx
    from edgesmith.recipe import InputSpec

    class Heads(torch.nn.Module):
        output_names = ("label", "box")

        def forward(self, x):
            return x.flatten(1)[:, :3], x.flatten(1)[:, :4]

    spec = [InputSpec(name="input", shape=["batch", 1, 8, 8])]
    own = export_onnx(Heads().eval(), spec, tmp_path / "own.onnx")
    assert [o.name for o in onnx.load(str(own)).graph.output] == ["label", "box"]
    given = export_onnx(Heads().eval(), spec, tmp_path / "given.onnx", output_names=["cls", "bbox"])
    assert [o.name for o in onnx.load(str(given)).graph.output] == ["cls", "bbox"]
    from edgesmith.errors import InputError

    with pytest.raises(InputError, match="do not fit the model's 2 output"):
        export_onnx(Heads().eval(), spec, tmp_path / "bad.onnx", output_names=["only_one"])


def test_latency_budgets_are_judged_on_the_interval():
    from edgesmith.evaluate import judge, overall
    from edgesmith.profiles import load_profile

    prof = load_profile("x86-avx512-vnni-ort")

    def status(low, point, high):
        metrics = {"speedup_vs_fp32@1": point, "speedup_vs_fp32_low@1": low, "speedup_vs_fp32_high@1": high}
        v = next(v for v in judge(prof, metrics, {}) if v.metric == "speedup_vs_fp32")
        return v.status, overall([v])

    assert status(1.1, 1.3, 1.5) == ("pass", "pass")  # surely faster
    assert status(0.7, 0.8, 0.9) == ("fail", "fail")  # surely slower
    assert status(0.9, 1.02, 1.1) == ("inconclusive", "inconclusive")  # cannot tell: reported, never a failure, never a PASS
    assert status(0.96, 0.98, 1.04) == ("inconclusive", "inconclusive")  # a point estimate below 1 is not a failure either
    v = next(
        v for v in judge(prof, {"speedup_vs_fp32@1": 1.02, "speedup_vs_fp32_low@1": 0.9, "speedup_vs_fp32_high@1": 1.1}, {}) if v.metric == "speedup_vs_fp32"
    )
    assert [overall([v], policy) for policy in ("fail", "warn", "pass")] == ["fail", "inconclusive", "pass"]  # one declared policy
