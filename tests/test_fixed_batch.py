"""Models with a fixed batch (an ONNX file exported with batch 1, as many model zoos ship them): the data goes in
batches of exactly that size, timing happens at that batch only, and every way that cannot work is named.
Before, calibration fed batches of 32 into a batch-1 graph and ONNX Runtime's InvalidArgument was exit 3."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgesmith.errors import ConfigError
from tests.conftest import NO_SPEEDUP_BUDGET, read_manifest


def _fixed(src, dst, batch: int):
    model = onnx.load(str(src))
    for value in [*model.graph.input, *model.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = batch
    onnx.save(model, str(dst))
    return dst


@pytest.fixture(scope="module")
def fixed1(digits_onnx, tmp_path_factory):
    return _fixed(digits_onnx, tmp_path_factory.mktemp("fixed") / "fixed1.onnx", 1)


def test_a_batch_1_model_is_quantized_calibrated_and_timed_at_batch_1(cli, tmp_path, fixed1, digits_test):
    import yaml

    x, y = digits_test
    np.savez(tmp_path / "d.npz", input=x[:100], labels=y[:100])
    recipe = {
        "model": {"source": str(fixed1)},
        "data": {"calibration": {"source": str(tmp_path / "d.npz")}, "evaluation": {"source": str(tmp_path / "d.npz")}},
        "passes": [{"type": "ptq_int8", "calibration": "minmax"}],
        "targets": [{"profile": "x86-avx512-vnni-ort", "budgets": NO_SPEEDUP_BUDGET}],
        "bench": {"iterations": 10, "warmup": 2},
        "output_dir": str(tmp_path / "out"),
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    r = cli("run", tmp_path / "r.yaml")
    assert r.code in (0, 1), r.stderr[-1500:]  # 1 only from a latency budget on a busy machine, never a crash
    assert "takes batches of exactly 1: timed at batch 1 only" in r.stderr
    target = read_manifest(tmp_path / "out")["targets"]["x86-avx512-vnni-ort"]
    assert set(target["latency"]["compressed"]) == set(target["latency"]["fp32"]) == {"1"} and target["metrics"]["top1"] > 0.8
    bench = cli("bench", fixed1, "--batch", "8", "--iterations", "5")
    assert bench.code == 2 and "takes batches of exactly 1; batch 8 cannot be timed" in bench.stderr


def test_export_with_a_fixed_batch_writes_that_batch(cli, tmp_path):
    r = cli("export", "edgesmith.zoo:pretrained_digits_cnn", "-i", "input:1x1x8x8", "-o", tmp_path / "o")
    assert r.code == 0, r.stderr[-1500:]
    dims = onnx.load(str(tmp_path / "o" / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 1, 8, 8]  # traced at the batch it was given, not the example batch of 2


def test_data_is_cut_to_the_fixed_batch_and_a_remainder_said(digits_test):
    from edgesmith.data.sources import load_dataset
    from edgesmith.errors import InputError
    from edgesmith.schema import InputSpec

    specs = [InputSpec(name="input", shape=[4, 1, 8, 8])]
    ds = load_dataset("digits", specs, role="evaluation", samples=10)
    assert [b.size for b in ds.batches] == [4, 4] and any("last 2 sample(s) left out" in n for n in ds.notes)
    with pytest.raises(InputError, match="takes batches of exactly 4"):
        load_dataset("digits", specs, role="evaluation", samples=3)


def test_a_budget_at_another_batch_is_refused_not_dropped():
    from edgesmith.profiles import load_profile

    prof = load_profile("x86-avx512-vnni-ort")
    same, note = prof.for_fixed_batch(1, "t")
    assert same.batch_sizes == [1] and "timed at batch 1 only" in note
    assert prof.for_fixed_batch(None, "t") == (prof, None)
    with pytest.raises(ConfigError, match=r"budgets at batch \[1\], but the model takes batches of exactly 8"):
        prof.for_fixed_batch(8, "t")


@pytest.mark.parametrize("text", ["input:batch,1,8,8,,", "input:-1,1,8,8", "input: ,1,8,8", "input:batch,0.5,8,8"])
def test_a_dimension_that_is_neither_a_size_nor_a_name_is_refused(cli, tmp_path, text):
    r = cli("export", "edgesmith.zoo:pretrained_digits_cnn", "-i", text, "--dry-run")
    assert r.code == 2 and "is neither a size >= 1 nor a name" in r.stderr and len(r.error_lines) == 1, r.stderr


def test_dimension_names_keep_their_x():
    from edgesmith.cli.common import parse_input

    assert parse_input("input:1x3x224x224")["shape"] == [1, 3, 224, 224]
    assert parse_input("ids:batch,max_len")["shape"] == ["batch", "max_len"]  # was split into 'ma' and '_len'
