from __future__ import annotations

import pytest

from edgesmith.errors import ConfigError
from edgesmith.profiles import builtin_names, load_profile
from edgesmith.profiles.schema import Goal
from edgesmith.recipe import parse_recipe

BASE = {"model": {"source": "edgesmith.zoo:digits_cnn"}}

BAD_RECIPES = [
    ({**BASE, "passes": [{"type": "ptq_int8", "calibration": "kl"}]}, "calibration: Input should be 'minmax', 'percentile' or 'entropy', got 'kl'"),
    ({**BASE, "passes": [{"type": "ptq_int8", "percentile": 50}]}, "percentile must be in (90, 100], got 50"),
    ({**BASE, "passes": [{"type": "dynamic_int8", "op_types": []}]}, "op_types must name at least one op type"),
    ({**BASE, "metric": "accuracy"}, "metric must be top1, fidelity, auto or package.module:function"),
    ({**BASE, "targets": ["x86-avx512-vnni-ort", "x86-avx512-vnni-ort"]}, "a target is listed twice"),
    ({**BASE, "inputs": [{"name": "x", "shape": [0, 3]}]}, "dimensions must be >= 1 or a name"),
    ({**BASE, "data": {"calibration": {"source": "digits", "samples": 0}}}, "data.calibration.samples"),
    ({**BASE, "export": {"opset": 9}}, "export.opset"),
    ({**BASE, "model": {"source": "a:b", "weigths": "w.pt"}}, "unknown key 'weigths' (allowed: kwargs, reference, source, trust_checkpoint, weights)"),
    ({**BASE, "targets": [{"profile": "x86-avx512-vnni-ort", "budgets": [{"metric": "top1", "goal": "within", "value": 1}]}]}, "targets.0.budgets.0.goal"),
    ([1, 2], "recipe must be a YAML mapping"),
]


@pytest.mark.parametrize("data,message", BAD_RECIPES)
def test_bad_recipe_is_rejected_with_exact_message(data, message):
    with pytest.raises(ConfigError) as info:
        parse_recipe(data)
    assert message in info.value.one_line()


def test_recipe_defaults_and_yaml_round_trip():
    import yaml

    recipe = parse_recipe({**BASE, "passes": [{"type": "ptq_int8", "calibration": "entropy"}, "fp16"]})
    assert [p.type for p in recipe.passes] == ["ptq_int8", "fp16"]
    assert recipe.passes[0].config().calibration == "entropy"
    assert recipe.targets[0].profile == "x86-avx512-vnni-ort"
    again = parse_recipe(yaml.safe_load(recipe.to_yaml()))
    assert again == recipe


def test_every_builtin_profile_loads_and_arm_is_marked_estimated():
    names = builtin_names()
    assert {"x86-avx512-vnni-ort", "arm-cortex-a72-ort"} <= set(names)
    for name in names:
        assert load_profile(name).name == name
    assert load_profile("arm-cortex-a72-ort").estimated
    x86 = load_profile("x86-avx512-vnni-ort")
    assert not x86.estimated and x86.quantization.activation_type == "uint8" and x86.quantization.per_channel


def test_profile_file_and_overrides(tmp_path):
    import yaml

    data = load_profile("x86-avx512-vnni-ort").model_dump(mode="json")
    data["name"] = "mine"
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(data))
    prof = load_profile("mine.yaml", base_dir=tmp_path)
    over = prof.with_overrides([Goal(metric="top1", goal="max-degradation", value=2.0)], threads=1, batch_sizes=[1])
    assert [g.value for g in over.budgets if g.metric == "top1"] == [2.0]
    assert over.threads == 1 and over.batch_sizes == [1]
    data["budgets"].append({"metric": "latency_p90_ms", "goal": "max", "value": 5, "batch": 64})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="names batch 64, not in batch_sizes"):
        load_profile(str(tmp_path / "bad.yaml"))


def test_pass_registry_lists_passes_with_their_stage():
    from edgesmith.compress import get_pass, known_passes

    passes = known_passes()
    assert {"ptq_int8", "dynamic_int8", "fp16", "gpfq", "rtn", "fold_bn"} <= set(passes)
    assert passes["gpfq"].stage == "torch" and passes["ptq_int8"].stage == "onnx"
    assert all(p.stage in ("torch", "onnx") for p in passes.values())
    with pytest.raises(ConfigError) as err:
        get_pass("prune")
    assert err.value.hint == f"did you mean prune_channels, prune_l0, prune_magnitude, prune_nm? `edgesmith passes` lists all {len(passes)} with what each does"
    with pytest.raises(ConfigError) as err:
        get_pass("xyzzy")
    assert err.value.hint.startswith("`edgesmith passes` lists all")


def test_pass_precision_must_be_allowed_by_target():
    from edgesmith import pipeline

    recipe = parse_recipe({**BASE, "passes": ["fp16"]})
    with pytest.raises(ConfigError, match="produces fp16, which target 'x86-avx512-vnni-ort' does not allow"):
        pipeline.run(recipe, __import__("pathlib").Path("."), dry_run=True)


def test_dry_run_plans_without_running(tmp_path):
    from edgesmith import pipeline

    recipe = parse_recipe({**BASE, "passes": ["ptq_int8"], "targets": ["x86-avx512-vnni-ort", "arm-cortex-a72-ort"], "output_dir": str(tmp_path / "o")})
    result = pipeline.run(recipe, tmp_path, dry_run=True)
    assert result.dry_run and not (tmp_path / "o").exists()
    assert any("export the float model to ONNX" in s for s in result.plan)
    assert sum("ptq_int8" in s for s in result.plan) == 2  # once per target: defaults are per target


def _photo_folder(root, n=3):
    from PIL import Image

    root.mkdir()
    for i in range(n):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(root / f"p{i}.jpg")
    return root


def test_dry_run_refuses_up_front_what_the_run_would_refuse(tmp_path):
    """Data sources, input specs, labels: the dry run says no where the run would, before any work."""
    from edgesmith import pipeline
    from edgesmith.errors import InputError

    photos = _photo_folder(tmp_path / "photos")
    on_photos = {**BASE, "data": {"calibration": {"source": str(photos)}, "evaluation": {"source": str(photos)}}, "passes": ["ptq_int8"]}
    with pytest.raises(InputError, match="metric top1 needs labels, and the evaluation data .*photos has none"):
        pipeline.run(parse_recipe({**on_photos, "metric": "top1"}), tmp_path, out_dir=tmp_path / "o", dry_run=True)
    assert pipeline.run(parse_recipe(on_photos), tmp_path, out_dir=tmp_path / "o", dry_run=True).dry_run  # metric auto: fidelity then
    with pytest.raises(InputError, match="data not found"):
        pipeline.run(parse_recipe({**BASE, "data": {"evaluation": {"source": str(tmp_path / "none")}}}), tmp_path, out_dir=tmp_path / "o", dry_run=True)
    no_shape = {k: v for k, v in BASE.items() if k != "inputs"} | {"model": {"source": "torch.nn:Identity"}}
    with pytest.raises(ConfigError, match="does not say the model's inputs"):
        pipeline.run(parse_recipe(no_shape), tmp_path, out_dir=tmp_path / "o", dry_run=True)
    with pytest.raises(ConfigError, match="a pass needs calibration data"):
        pipeline.run(parse_recipe({**BASE, "passes": ["ptq_int8"], "data": {"calibration": None}}), tmp_path, out_dir=tmp_path / "o", dry_run=True)
    assert not (tmp_path / "o").exists()


def test_a_recipe_without_a_metric_takes_auto():
    assert parse_recipe(BASE).metric == "auto"


def test_profiles_init_writes_a_loadable_profile_for_this_machine(cli, tmp_path):
    result = cli("profiles", "init", "this-box", "-o", "box.yaml", cwd=tmp_path)
    assert result.code == 0, result.stderr
    prof = load_profile("box.yaml", base_dir=tmp_path)
    assert prof.name == "this-box" and prof.hardware.cores >= 1 and not prof.estimated
    assert "INT8 speed-up over FP32 on a probe conv net" in prof.quantization.rationale
    assert prof.quantization.activation_type in ("uint8", "int8")
    quick = cli("profiles", "init", "quick", "-o", "q.yaml", "--no-benchmark", cwd=tmp_path)
    assert quick.code == 0 and load_profile("q.yaml", base_dir=tmp_path).quantization.activation_type == "uint8"
