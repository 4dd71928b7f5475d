"""int4_weights: 4-bit weight storage through ONNX INT4 + DequantizeLinear, on a CRNN (convs, LSTMs, linear)."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgesmith.compress import PassContext, build_pass_config, get_pass
from edgesmith.errors import InputError
from edgesmith.export.onnx_export import export_onnx
from edgesmith.recipe import InputSpec
from edgesmith.zoo.easyocr import tiny_recognizer

SPEC = [InputSpec(name="line", shape=["batch", 1, 64, 256])]


@pytest.fixture(scope="module")
def crnn(tmp_path_factory):
    model = tiny_recognizer(seed=3)
    path = export_onnx(model, SPEC, tmp_path_factory.mktemp("int4") / "crnn.onnx")
    x = np.random.default_rng(0).random((2, 1, 64, 256), dtype=np.float32)
    return model, path, x


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"line": x})[0]


def _weight_bytes(path) -> tuple[int, int]:
    """Bytes of float and of INT4 initializers of two or more dimensions."""
    inits = onnx.load(str(path)).graph.initializer
    fl = sum(int(np.prod(i.dims)) * 4 for i in inits if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) >= 2)
    i4 = sum((int(np.prod(i.dims)) + 1) // 2 for i in inits if i.data_type == onnx.TensorProto.INT4)
    return fl, i4


def test_every_weight_of_convs_lstms_and_linear_is_stored_in_four_bits(tmp_path, crnn):
    _, path, x = crnn
    ctx = PassContext(work_dir=tmp_path)
    out = get_pass("int4_weights").apply(path, build_pass_config("int4_weights", {"group_size": 32, "min_size": 64}), ctx)
    m = onnx.load(str(out))
    onnx.checker.check_model(m)
    lstms = [n for n in m.graph.node if n.op_type == "LSTM"]
    assert len(lstms) == 2
    inits = {i.name for i in m.graph.initializer}
    assert all(n.input[1] not in inits and n.input[2] not in inits for n in lstms)  # W and R come from INT4 now
    float_before, _ = _weight_bytes(path)
    float_after, int4_bytes = _weight_bytes(out)
    assert float_after < 0.02 * float_before  # what stays float is tiny (below min_size)
    before, after = ctx.details["int4_weights"]["weight_bytes"]
    assert before / after > 6  # 4 bits + one float scale per 32 weights
    levels = np.concatenate([onnx.numpy_helper.to_array(i).ravel() for i in m.graph.initializer if i.data_type == onnx.TensorProto.INT4])
    assert levels.min() >= -7 and levels.max() <= 7 and len(np.unique(levels)) == 15
    ref, got = _run(path, x), _run(out, x)
    r2 = 1 - ((ref - got) ** 2).sum() / ((ref - ref.mean()) ** 2).sum()
    assert 0.95 < r2 < 1.0  # quantized (not a copy), and close


def test_openvino_reads_the_int4_model(tmp_path, crnn):
    import openvino as ov

    _, path, x = crnn
    out = get_pass("int4_weights").apply(path, build_pass_config("int4_weights", {"min_size": 64, "group_size": 16}), PassContext(work_dir=tmp_path))
    got = ov.Core().compile_model(str(out), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(x)[0]
    ref = _run(out, x)
    assert np.abs(got - ref).max() <= 0.05 * np.abs(ref).max()


def test_a_torch_four_bit_grid_is_stored_exactly(tmp_path, crnn):
    """rtn at 4 bits per output channel, then int4_weights: the INT4 model computes the rtn model's weights."""
    model, _, x = crnn
    ctx = PassContext(work_dir=tmp_path)
    q = get_pass("rtn").apply(copy.deepcopy(model), build_pass_config("rtn", {"bits": 4}), ctx)
    path = export_onnx(q, SPEC, tmp_path / "rtn.onnx")
    out = get_pass("int4_weights").apply(path, build_pass_config("int4_weights", {"min_size": 64}), ctx)
    assert ctx.details["int4_weights"]["on_torch_grid"] >= 4
    m = onnx.load(str(out))
    convs = [i for i in m.graph.initializer if i.name.endswith(".weight.int4") and len(i.dims) == 4]
    assert convs
    for conv in convs:  # each conv dequantizes to exactly the rtn model's weights
        scale = next(i for i in m.graph.initializer if i.name == conv.name + "_scale")
        deq = onnx.numpy_helper.to_array(conv).astype(np.float32) * onnx.numpy_helper.to_array(scale).reshape(-1, 1, 1, 1)
        layer = dict(q.named_parameters())[conv.name.removesuffix(".int4")].detach().numpy()
        np.testing.assert_allclose(deq, layer, rtol=1e-6, atol=1e-7)
    with torch.no_grad():
        ref = q(torch.from_numpy(x)).numpy()
    got = _run(out, x)  # the LSTMs (not rtn's: it takes convs and linears) are rounded here on top
    assert 1 - ((ref - got) ** 2).sum() / ((ref - ref.mean()) ** 2).sum() > 0.99


def test_a_model_without_weights_is_refused_in_one_line(tmp_path):
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(InputError, match="no weight tensor"):
        get_pass("int4_weights").apply(path, build_pass_config("int4_weights", {}), PassContext(work_dir=tmp_path))
    with pytest.raises(Exception, match="group_size"):
        build_pass_config("int4_weights", {"group_size": 1})


def test_onnx_runtime_folds_the_weights_once_at_load(tmp_path, crnn):
    """ORT's QDQ handling would dequantize 4-bit weights on every run; the backend folds them at load
    (same outputs) and keeps the artifact small on disk; a float model is not taken for one."""
    from edgesmith.profiles import load_profile
    from edgesmith.runtime.onnxruntime import BACKEND, weights_only_quantized

    _, path, x = crnn
    out = get_pass("int4_weights").apply(path, build_pass_config("int4_weights", {"min_size": 64}), PassContext(work_dir=tmp_path))
    art = BACKEND.compile(out, tmp_path / "compiled.onnx", load_profile("x86-avx512-vnni-ort"))
    assert art.options["fold_weights"] is True and weights_only_quantized(art.path)
    assert onnx.load(str(art.path)).ByteSize() < 0.3 * onnx.load(str(path)).ByteSize()  # the artifact stays small on disk
    np.testing.assert_allclose(BACKEND.load(art, 1).run({"line": x})[0], _run(out, x), rtol=1e-4, atol=1e-5)
    assert not weights_only_quantized(path)


@pytest.mark.parametrize(
    "profile, recurrent, dynamic", [("x86-avx512-vnni-ort", "auto", True), ("x86-avx512-vnni-ort", "float", False), ("x86-avx512-vnni-ov", "auto", False)]
)
def test_static_int8_gives_the_lstms_dynamic_int8_on_onnx_runtime_only(tmp_path, crnn, profile, recurrent, dynamic):
    """ORT's static quantizer leaves LSTMs float; on an ORT CPU target they become DynamicQuantizeLSTM (int8 weights)."""
    from edgesmith.data.sources import Dataset, split_batches
    from edgesmith.profiles import load_profile

    _, path, x = crnn
    calib = Dataset("lines", split_batches({"line": np.random.default_rng(1).random((16, 1, 64, 256), dtype=np.float32)}, None, 8))
    ctx = PassContext(work_dir=tmp_path, profile=load_profile(profile), input_specs=tuple(SPEC), calibration=calib)
    out = get_pass("ptq_int8").apply(path, build_pass_config("ptq_int8", {"recurrent": recurrent}), ctx)
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert ops.count("DynamicQuantizeLSTM") == (2 if dynamic else 0) and ops.count("LSTM") == (0 if dynamic else 2)
    assert "QuantizeLinear" in ops  # the convolutions stay static INT8
    if dynamic:
        assert ctx.details["ptq_int8_recurrent"]["dynamic"] and any("LSTM(s) dynamic INT8" in n for n in ctx.notes)
        ref, got = _run(path, x), _run(out, x)
        assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] > 0.99


def test_dynamic_lstms_asked_for_a_target_that_cannot_run_them_are_refused(tmp_path, crnn):
    from edgesmith.data.sources import Dataset, split_batches
    from edgesmith.errors import ConfigError
    from edgesmith.profiles import load_profile

    _, path, _ = crnn
    calib = Dataset("lines", split_batches({"line": np.random.default_rng(1).random((8, 1, 64, 256), dtype=np.float32)}, None, 8))
    ctx = PassContext(work_dir=tmp_path, profile=load_profile("x86-avx512-vnni-ov"), input_specs=tuple(SPEC), calibration=calib)
    with pytest.raises(ConfigError, match="DynamicQuantizeLSTM.*cannot run"):
        get_pass("ptq_int8").apply(path, build_pass_config("ptq_int8", {"recurrent": "dynamic"}), ctx)
