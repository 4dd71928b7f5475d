"""ptq_int8 / dynamic_int8 / fp16: structure of the produced graphs and numeric fidelity."""

from __future__ import annotations

from collections import Counter
from dataclasses import FrozenInstanceError, replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgesmith.compress import PassContext, build_pass_config, get_pass
from edgesmith.data import load_dataset
from edgesmith.metrics import cosine
from edgesmith.profiles import load_profile
from edgesmith.recipe import InputSpec

SPEC = [InputSpec(name="input", shape=["batch", 1, 8, 8])]


@pytest.fixture(scope="module")
def calib():
    return load_dataset("digits", SPEC, role="calibration", samples=128)


def _ctx(tmp_path, calib, profile="x86-avx512-vnni-ort"):
    return PassContext(work_dir=tmp_path, profile=load_profile(profile) if profile else None, input_specs=tuple(SPEC), calibration=calib)


def _ops(path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _quant_types(path) -> set[int]:
    """Element types of the zero points of activation QuantizeLinear nodes."""
    m = onnx.load(str(path))
    inits = {i.name: i for i in m.graph.initializer}
    return {inits[n.input[2]].data_type for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[2] in inits}


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_ptq_int8_takes_uint8_activations_from_the_x86_profile(tmp_path, digits_onnx, calib):
    info = get_pass("ptq_int8")
    ctx = _ctx(tmp_path, calib)
    out = info.apply(digits_onnx, build_pass_config("ptq_int8", {}), ctx)
    ops = _ops(out)
    assert ops["QuantizeLinear"] >= 4 and ops["DequantizeLinear"] >= 8  # every conv and the head in QDQ
    assert _quant_types(out) == {onnx.TensorProto.UINT8}
    assert ctx.details["ptq_int8"]["activation_type"] == "uint8" and ctx.details["ptq_int8"]["per_channel"]
    assert "from profile x86-avx512-vnni-ort" in " ".join(ctx.notes)


def test_ptq_int8_recipe_overrides_the_profile(tmp_path, digits_onnx, calib):
    out = get_pass("ptq_int8").apply(digits_onnx, build_pass_config("ptq_int8", {"activation_type": "int8"}), _ctx(tmp_path, calib))
    assert _quant_types(out) == {onnx.TensorProto.INT8}


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_each_calibration_method_keeps_digits_outputs_close(tmp_path, digits_onnx, calib, digits_test, method):
    out = get_pass("ptq_int8").apply(digits_onnx, build_pass_config("ptq_int8", {"calibration": method}), _ctx(tmp_path, calib))
    x = digits_test[0][:200]
    ref, got = _run(digits_onnx, x), _run(out, x)
    assert cosine(ref, got) > 0.99
    assert (ref.argmax(1) == got.argmax(1)).mean() > 0.97


def test_excluded_nodes_stay_float_and_are_reported(tmp_path, digits_onnx, calib):
    ctx = _ctx(tmp_path, calib)
    out = get_pass("ptq_int8").apply(digits_onnx, build_pass_config("ptq_int8", {"exclude_op_types": ["Gemm"]}), ctx)
    graph = onnx.load(str(out)).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    gemm = [n for n in graph.node if n.op_type == "Gemm"]
    assert gemm and all(producer.get(n.input[0]) != "DequantizeLinear" for n in gemm)
    assert any("kept 1 compute node(s) in float" in n and "(Gemm)" in n for n in ctx.notes)


def test_dynamic_int8_quantizes_matmul_and_reports_gemm(tmp_path, digits_onnx, calib):
    ctx = _ctx(tmp_path, None)
    out = get_pass("dynamic_int8").apply(digits_onnx, build_pass_config("dynamic_int8", {"op_types": ["Conv", "Gemm"]}), ctx)
    ops = _ops(out)
    assert ops["ConvInteger"] == 3
    assert any("no dynamic kernel for Gemm" in n for n in ctx.notes)
    x = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
    assert cosine(_run(digits_onnx, x), _run(out, x)) > 0.99


def test_fp16_converts_weights_and_keeps_float32_io(tmp_path, digits_onnx, digits_test):
    out = get_pass("fp16").apply(digits_onnx, build_pass_config("fp16", {}), _ctx(tmp_path, None, None))
    x = digits_test[0]
    ref, got = _run(digits_onnx, x), _run(out, x)
    assert got.dtype == np.float32 and cosine(ref, got) > 0.9999
    assert (ref.argmax(1) == got.argmax(1)).mean() > 0.998
    m = onnx.load(str(out))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {i.data_type for i in m.graph.initializer if len(i.dims) == 4} == {onnx.TensorProto.FLOAT16}
    assert out.stat().st_size < 0.6 * digits_onnx.stat().st_size


def test_pass_configs_are_frozen():
    cfg = build_pass_config("ptq_int8", {"calibration": "entropy"})
    with pytest.raises(FrozenInstanceError):
        cfg.calibration = "minmax"
    assert replace(cfg, samples=8).samples == 8


def _activation_scales(path) -> dict[str, float]:
    """Each activation QuantizeLinear's scale (weights are quantized offline: their Q nodes are folded)."""
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    return {n.input[0]: float(numpy_helper.to_array(inits[n.input[1]])) for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[1] in inits}


def test_entropy_calibration_changes_the_scales_it_says_it_changes(tmp_path, digits_onnx, calib):
    """Entropy (KL) calibration clips activation tails: scales no larger than min-max's, and some smaller
    (ONNX Runtime's own entropy calibrator, as quantize_static runs it, gave min-max's scales exactly)."""
    scales = {}
    for method in ("minmax", "entropy"):
        (tmp_path / method).mkdir()
        out = get_pass("ptq_int8").apply(digits_onnx, build_pass_config("ptq_int8", {"calibration": method}), _ctx(tmp_path / method, calib))
        scales[method] = _activation_scales(out)
    shared = set(scales["minmax"]) & set(scales["entropy"])
    assert shared
    assert all(scales["entropy"][t] <= scales["minmax"][t] * (1 + 1e-6) for t in shared)
    assert sum(scales["entropy"][t] < 0.98 * scales["minmax"][t] for t in shared) >= 1


def test_the_kl_threshold_clips_a_heavy_tail_and_keeps_a_bounded_one():
    from edgesmith.compress.quantize.entropy import BINS, kl_threshold

    rng = np.random.default_rng(0)
    heavy = np.abs(np.concatenate([rng.laplace(0, 1, 200_000), [60.0, -80.0]]))
    hist, edges = np.histogram(heavy, bins=BINS, range=(0, heavy.max()))
    assert kl_threshold(hist, edges) < 0.5 * heavy.max()  # two outliers do not set the range
    uniform = rng.uniform(0, 1, 200_000)
    hist, edges = np.histogram(uniform, bins=BINS, range=(0, 1))
    assert kl_threshold(hist, edges) > 0.9  # nothing to clip
