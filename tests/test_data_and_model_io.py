from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgesmith.data import load_dataset
from edgesmith.errors import ConfigError, InputError
from edgesmith.recipe import InputSpec

SPEC = [InputSpec(name="input", shape=["batch", 1, 8, 8])]


def test_digits_split_is_fixed_and_disjoint():
    from edgesmith.data.digits import load_digits_split

    xtr, ytr = load_digits_split("train")
    xte, yte = load_digits_split("test")
    assert xtr.shape == (1197, 1, 8, 8) and xte.shape == (600, 1, 8, 8)
    assert xtr.dtype == np.float32 and 0.0 <= xtr.min() and xtr.max() <= 1.0
    assert set(np.unique(yte)) == set(range(10))
    assert not {x.tobytes() for x in xte[:50]} & {x.tobytes() for x in xtr}  # held out (spot check)
    assert np.array_equal(load_digits_split("test")[1], yte)


def test_npz_with_named_inputs_and_labels(tmp_path):
    x = np.random.default_rng(0).random((70, 1, 8, 8)).astype(np.float64)
    np.savez(tmp_path / "d.npz", input=x, labels=np.arange(70) % 10)
    ds = load_dataset(str(tmp_path / "d.npz"), SPEC, role="evaluation", batch_size=32)
    assert [b.size for b in ds.batches] == [32, 32, 6] and ds.has_labels
    assert ds.batches[0].inputs["input"].dtype == np.float32  # cast to the spec's dtype
    assert ds.take(40).num_samples == 40


def test_npz_with_wrong_names_is_explained(tmp_path):
    np.savez(tmp_path / "d.npz", a=np.zeros((2, 1, 8, 8)), b=np.zeros((2, 1, 8, 8)))
    with pytest.raises(InputError, match=r"has arrays \['a', 'b'\]; the model's inputs are \['input'\]"):
        load_dataset(str(tmp_path / "d.npz"), SPEC, role="calibration")


def test_data_function_batches(tmp_path, monkeypatch):
    (tmp_path / "mydata.py").write_text(
        "import numpy as np\ndef batches():\n    for i in range(3):\n        yield np.full((4, 1, 8, 8), i, dtype=np.float32), np.full(4, i)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ds = load_dataset("mydata:batches", SPEC, role="evaluation")
    assert ds.num_samples == 12 and list(ds.labels()) == [0] * 4 + [1] * 4 + [2] * 4


def test_a_data_module_of_the_same_name_in_another_folder_is_the_one_imported(tmp_path, monkeypatch):
    """Two recipes' folders in one process, each with its own ``mydata.py``: the second is not the first's."""
    for name, value in (("one", 1), ("two", 2)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "samedata.py").write_text(
            f"import numpy as np\ndef batches():\n    yield np.full((2, 1, 8, 8), {value}, dtype=np.float32), np.full(2, {value})\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path / "one"))
    assert list(load_dataset("samedata:batches", SPEC, role="evaluation").labels()) == [1, 1]
    monkeypatch.syspath_prepend(str(tmp_path / "two"))
    assert list(load_dataset("samedata:batches", SPEC, role="evaluation").labels()) == [2, 2]
    monkeypatch.delitem(__import__("sys").modules, "samedata")


def test_inf_in_evaluation_data_is_located(tmp_path):
    x = np.zeros((10, 1, 8, 8), dtype=np.float32)
    x[7, 0, 2, 5] = -np.inf
    np.savez(tmp_path / "d.npz", input=x)
    with pytest.raises(InputError, match=r"evaluation data for input 'input' contains 0 NaN and 1 Inf value\(s\); first at sample 7, position \[0, 2, 5\]"):
        load_dataset(str(tmp_path / "d.npz"), SPEC, role="evaluation", batch_size=4)


def test_unknown_data_source():
    with pytest.raises(ConfigError, match="unknown data source 'imagenet'"):
        load_dataset("imagenet", SPEC, role="calibration")


def test_weights_only_checkpoint_and_safetensors_load(tmp_path):
    import torch
    from safetensors.torch import save_file

    from edgesmith.model_io import load_model
    from edgesmith.recipe import ModelSpec
    from edgesmith.zoo import digits_cnn

    ref = digits_cnn()
    torch.save(ref.state_dict(), tmp_path / "w.pt")
    save_file(ref.state_dict(), str(tmp_path / "w.safetensors"))
    for name in ("w.pt", "w.safetensors"):
        loaded = load_model(ModelSpec(source="edgesmith.zoo:digits_cnn", weights=name), tmp_path)
        assert all(torch.equal(a, b) for a, b in zip(loaded.module.state_dict().values(), ref.state_dict().values()))


def test_weights_for_another_architecture_are_refused(tmp_path):
    import torch

    from edgesmith.model_io import load_model
    from edgesmith.recipe import ModelSpec

    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="weights do not match the model: .* missing key"):
        load_model(ModelSpec(source="edgesmith.zoo:digits_cnn", weights="other.pt"), tmp_path)


def test_uniform_batches_for_histogram_calibration():
    x = np.zeros((70, 1, 8, 8), dtype=np.float32)
    from edgesmith.data.sources import Dataset, split_batches

    ds = Dataset("x", split_batches({"input": x}, None, 32))
    uni, dropped = ds.uniform_batches()
    assert [b.size for b in uni.batches] == [32, 32] and dropped == 6
    small, dropped = ds.take(20).uniform_batches()
    assert small.num_samples == 20 and dropped == 0


def test_external_data_outside_the_model_folder_is_refused(tmp_path, digits_onnx):
    import onnx

    from edgesmith.model_io import onnx_input_specs

    model = onnx.load(str(digits_onnx))
    init = model.graph.initializer[0]
    init.ClearField("raw_data")
    init.data_location = onnx.TensorProto.EXTERNAL
    init.external_data.add(key="location", value="../../etc/passwd")
    (tmp_path / "m").mkdir()
    onnx.save(model, str(tmp_path / "m" / "evil.onnx"))
    with pytest.raises(InputError, match="outside the model's folder"):
        onnx_input_specs(tmp_path / "m" / "evil.onnx")


def _with_external_weights(digits_onnx: Path, folder: Path) -> Path:
    import onnx

    folder.mkdir()
    onnx.save(onnx.load(str(digits_onnx)), str(folder / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    return folder / "model.onnx"


def test_an_onnx_model_with_external_weights_compiles_to_an_artifact_that_holds_them(cli, tmp_path, digits_onnx):
    """ONNX Runtime's optimised copy of such a model kept references to a data file nobody wrote beside it: every
    later load failed (exit 3). The model is taken in as one file, so the artifact computes what the model does."""
    import onnxruntime as ort

    model = _with_external_weights(digits_onnx, tmp_path / "ext")
    r = cli("compile", model, "-t", "x86-avx512-vnni-ort", "-o", tmp_path / "out")
    assert r.code == 0, r.stderr[-800:]
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]  # noqa: E731
    np.testing.assert_allclose(run(tmp_path / "out" / "x86-avx512-vnni-ort" / "model.onnxruntime.onnx"), run(digits_onnx), rtol=1e-5, atol=1e-5)


def test_external_weights_are_part_of_the_models_identity_and_must_be_there(tmp_path, digits_onnx):
    from edgesmith.model_io import onnx_input_specs, self_contained
    from edgesmith.outputs import sha256

    a = _with_external_weights(digits_onnx, tmp_path / "a")
    b = _with_external_weights(digits_onnx, tmp_path / "b")
    data = bytearray((tmp_path / "b" / "model.onnx.data").read_bytes())
    data[:4] = b"\x00\x00\x80\x3f"  # the first weight becomes 1.0: same graph file, other weights
    (tmp_path / "b" / "model.onnx.data").write_bytes(bytes(data))
    assert sha256(a) == sha256(b)  # the .onnx files alone cannot tell them apart (the cache key was this)
    assert sha256(self_contained(a)) != sha256(self_contained(b))
    assert self_contained(digits_onnx) == digits_onnx  # a model in one file is taken as it is
    (tmp_path / "a" / "model.onnx.data").unlink()
    with pytest.raises(InputError, match="keeps its weights in the external data file 'model.onnx.data', which is not next to it"):
        onnx_input_specs(a)


def test_model_module_next_to_the_recipe_is_importable(tmp_path):
    from edgesmith.model_io import load_model
    from edgesmith.recipe import ModelSpec

    (tmp_path / "recipe_local_net.py").write_text("from edgesmith.zoo import digits_cnn as build\n")
    loaded = load_model(ModelSpec(source="recipe_local_net:build"), tmp_path)
    assert loaded.kind == "torch" and loaded.default_inputs[0]["shape"] == ["batch", 1, 8, 8]


def test_the_default_digits_data_that_does_not_fit_the_model_says_so():
    """A recipe that names no data gets the bundled digits: the error says so, not 'reshape your data'."""
    with pytest.raises(InputError, match=r"the evaluation data is the bundled digits .*does not fit input 'line'.*hint: give your own data: `-d FOLDER`"):
        load_dataset("digits", [InputSpec(name="line", shape=["batch", 1, 64, 256])], role="evaluation")


def test_an_npz_that_unpacks_past_the_machines_memory_is_refused_from_its_headers(tmp_path):
    """A few KB whose header promises 244 GiB (a compressed npz bomb unpacks the same way): refused before numpy
    allocates it — a real one was answered by the kernel's OOM killer."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (1_000_000, 1, 256, 256)})
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("input.npy", header.getvalue() + b"\0" * 1000)
    with pytest.raises(InputError, match=r"bomb.npz unpacks to 244.1 GiB of arrays, more than half of this machine's"):
        load_dataset(str(tmp_path / "bomb.npz"), [InputSpec(name="input", shape=["batch", 1, 256, 256])], role="calibration")
