"""The typed pass contract: declared records and orders checked before any work, formats an open set."""

from dataclasses import dataclass

import pytest

from edgesmith.errors import ConfigError
from edgesmith.pipeline import check_pass_order
from edgesmith.recipe import parse_recipe


def _order(*types: str) -> None:
    check_pass_order(parse_recipe({"model": {"source": "edgesmith.zoo:digits_cnn"}, "passes": [{"type": t} for t in types]}), "torch")


@pytest.mark.parametrize(
    ("passes", "message"),
    [
        (("bias_correction",), r"pass 'bias_correction' needs the float weights a weight quantizer replaced \(FloatWeights\), and no pass before it"),
        (("bias_correction", "rtn"), r"pass 'bias_correction' needs .*FloatWeights.* from 'rtn', which the recipe lists after it"),
        (("equalize", "fold_bn"), r"pass 'equalize' must come after 'fold_bn', but the recipe lists 'fold_bn' after it"),
    ],
)
def test_a_wrong_pass_order_is_refused_in_one_line_naming_both_passes(passes, message):
    with pytest.raises(ConfigError, match=message) as info:
        _order(*passes)
    assert "\n" not in info.value.one_line()


@pytest.mark.parametrize(
    "passes",
    [
        ("rtn", "bias_correction"),
        ("gpfq", "bias_correction"),
        ("fold_bn", "equalize"),
        ("equalize",),
        ("fold_bn", "equalize", "rtn", "bias_correction", "ptq_int8"),
    ],
)
def test_declared_orders_are_accepted(passes):
    _order(*passes)


def test_records_are_typed_and_merge():
    from edgesmith.compress.contract import FloatWeights, Records, WeightGrids

    records = Records(FloatWeights({"a": 1}))
    records.add(FloatWeights({"b": 2}))
    assert dict(records.get(FloatWeights).entries) == {"a": 1, "b": 2}
    assert records.get(WeightGrids) is None


def test_profiles_list_open_formats_and_refuse_what_they_do_not_run(tmp_path):
    import yaml

    from edgesmith.profiles import load_profile

    base = load_profile("x86-avx512-vnni-ort").model_dump(mode="json")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({**base, "name": "binary-box", "precisions": ["fp32", "binary", "sparse-2:4"]}))
    assert load_profile(str(path)).precisions == ["fp32", "binary", "sparse-2:4"]
    recipe = parse_recipe({"model": {"source": "edgesmith.zoo:pretrained_digits_cnn"}, "passes": [{"type": "ptq_int8"}], "targets": [str(path)]})
    from edgesmith import pipeline

    with pytest.raises(ConfigError, match="pass 'ptq_int8' produces int8, which target .* does not allow"):
        pipeline.run(recipe, tmp_path, dry_run=True)


@pytest.mark.slow
def test_the_report_shows_both_parameter_counts_when_torch_passes_ran(tmp_path):
    from edgesmith import pipeline

    recipe = parse_recipe(
        {
            "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
            "passes": [{"type": "fold_bn"}, {"type": "rtn", "bits": 8}],
            "stop_after": "export",
            "output_dir": str(tmp_path / "out"),
        }
    )
    manifest = pipeline.run(recipe, tmp_path).manifest
    params = manifest["parameters"]
    assert params["float"] > 0 and params["after_torch_passes"] > 0 and params["architecture_changed"] is False


@dataclass(frozen=True)
class _NarrowConfig:
    width: int = 8


def _narrow(model, cfg, ctx):
    """Stands for a pruning pass: returns a narrower network (another architecture)."""
    from edgesmith.zoo import digits_cnn

    return digits_cnn(width=cfg.width).eval()


@pytest.mark.slow
def test_an_architecture_changing_torch_pass_is_re_exported_and_both_counts_reported(tmp_path):
    from edgesmith import pipeline
    from edgesmith.compress.registry import PassInfo, register_pass, unregister_pass

    register_pass(PassInfo("narrow_probe", "torch", _NarrowConfig, _narrow, "test: a narrower network", precision="pruned", changes_architecture=True))
    try:
        recipe = parse_recipe(
            {
                "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
                "passes": [{"type": "narrow_probe"}],
                "data": {"evaluation": {"source": "digits", "split": "test", "samples": 64}},
                "stop_after": "export",
                "output_dir": str(tmp_path / "out"),
            }
        )
        result = pipeline.run(recipe, tmp_path)
    finally:
        unregister_pass("narrow_probe")
    params = result.manifest["parameters"]
    assert params["architecture_changed"] is True and params["after_torch_passes"] < params["float"]
    assert "matches" in result.manifest["export_after_torch_passes"]["parity"] or "max |torch - onnx|" in result.manifest["export_after_torch_passes"]["parity"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"float model {params['float']:,}, after torch passes {params['after_torch_passes']:,} (the architecture changed" in report


@dataclass(frozen=True)
class _InterruptedConfig:
    pass


def _interrupted(model, cfg, ctx):
    """Stands for a training pass killed mid-epoch after its last checkpoint."""
    ctx.checkpoints.for_pass("probe training").save({"step": 3, "student": model.state_dict()})
    raise KeyboardInterrupt


def test_an_interrupted_run_keeps_its_checkpoints_and_says_how_to_resume(tmp_path):
    from edgesmith import pipeline
    from edgesmith.compress.registry import PassInfo, register_pass, unregister_pass

    register_pass(PassInfo("interrupted_probe", "torch", _InterruptedConfig, _interrupted, "test: a training pass killed mid-epoch"))
    try:
        recipe = parse_recipe(
            {
                "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
                "passes": [{"type": "interrupted_probe"}],
                "data": {"calibration": {"source": "digits", "samples": 32}},
                "stop_after": "export",
                "output_dir": str(tmp_path / "out"),
            }
        )
        with pytest.raises(KeyboardInterrupt) as err:
            pipeline.run(recipe, tmp_path)
    finally:
        unregister_pass("interrupted_probe")
    assert "--resume continues" in err.value.kept and str(tmp_path / "out" / "checkpoints") in err.value.kept
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["checkpoints"]  # no artifact, the checkpoint intact
    assert (tmp_path / "out" / "checkpoints" / "probe-training.pt").is_file()
