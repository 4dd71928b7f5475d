"""TensorRT backend: what runs without TensorRT (settings, shape profiles, calibration batching) and a
clean failure without it. The engine path itself was never executed here (no TensorRT, no GPU)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from edgesmith.errors import BackendUnavailable, ConfigError
from edgesmith.profiles import load_profile
from edgesmith.recipe import InputSpec
from edgesmith.runtime.tensorrt import EVAL_BATCH, ShapeRange, build_settings, qdq_zero_points_ok, shape_ranges

needs_no_trt = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")


def test_module_imports_without_tensorrt():
    import edgesmith.runtime.tensorrt as mod

    assert mod.BACKEND.artifact_suffix == ".engine"


@needs_no_trt
def test_missing_tensorrt_is_backend_unavailable_with_the_install_hint():
    from edgesmith.runtime import get_backend

    with pytest.raises(BackendUnavailable, match=r"tensorrt is not installed .*pip install 'edgesmith\[tensorrt\]'"):
        get_backend("tensorrt")


@needs_no_trt
def test_a_jetson_target_is_refused_before_any_work(cli, tmp_path):
    result = cli("quantize", "edgesmith.zoo:pretrained_digits_cnn", "-t", "jetson-orin-trt", cwd=tmp_path)
    assert result.code == 2 and "edgesmith[tensorrt]" in result.error_lines[0]
    assert "exporting" not in result.stderr and not (tmp_path / "edgesmith-out").exists()


def test_batch_dimension_spans_the_profile_batch_sizes():
    specs = [InputSpec(name="input", shape=["batch", 3, 224, 224])]
    # the maximum also covers the evaluation batch (EVAL_BATCH), which runs through the same engine
    assert shape_ranges(specs, [1, 8]) == {"input": ShapeRange((1, 3, 224, 224), (1, 3, 224, 224), (EVAL_BATCH, 3, 224, 224))}
    assert shape_ranges(specs, [4, 1, 16])["input"].opt == (4, 3, 224, 224)  # opt = the first (latency) batch


def test_other_dynamic_dimensions_need_a_range_from_the_profile():
    specs = [InputSpec(name="ids", shape=["batch", "seq"], dtype="int64")]
    with pytest.raises(ConfigError, match=r"dynamic dimension 'seq' \(axis 1\) and the profile gives no range"):
        shape_ranges(specs, [1])
    got = shape_ranges(specs, [1, 4], {"ids": {"seq": [16, 128, 512]}})
    assert got["ids"] == ShapeRange((1, 16), (1, 128), (EVAL_BATCH, 512))
    with pytest.raises(ConfigError, match="1 <= min <= opt <= max"):
        shape_ranges(specs, [1], {"ids": {"seq": [128, 16, 512]}})


def test_a_tensorrt_profile_gets_signed_symmetric_int8_qdq_and_an_fp32_reference(tmp_path, digits_onnx):
    """What TensorRT's documentation requires and we can check without it: explicit quantization with
    signed int8 and zero point 0, a strongly typed build (no FP16/INT8 flags, no calibrator), so the
    float reference engine is FP32; an asymmetric uint8 model is refused before any build."""
    from edgesmith.compress import PassContext, build_pass_config, get_pass
    from edgesmith.data import load_dataset

    prof = load_profile("jetson-orin-trt")
    specs = [InputSpec(name="input", shape=["batch", 1, 8, 8])]
    calib = load_dataset("digits", specs, role="calibration", samples=64)
    reference = build_settings(prof, specs, digits_onnx, calib)
    assert reference.int8_mode == "none" and reference.strongly_typed  # the float model builds as FP32
    assert reference.workspace_bytes == 1024 * 2**20
    ctx = PassContext(work_dir=tmp_path / "trt", profile=prof, input_specs=tuple(specs), calibration=calib)
    ctx.work_dir.mkdir()
    qdq = get_pass("ptq_int8").apply(digits_onnx, build_pass_config("ptq_int8", {}), ctx)
    assert qdq_zero_points_ok(qdq) == [] and build_settings(prof, specs, qdq, None).int8_mode == "explicit"
    ort_ctx = PassContext(work_dir=tmp_path / "ort", profile=load_profile("x86-avx512-vnni-ort"), input_specs=tuple(specs), calibration=calib)
    ort_ctx.work_dir.mkdir()
    u8 = get_pass("ptq_int8").apply(digits_onnx, build_pass_config("ptq_int8", {}), ort_ctx)
    assert qdq_zero_points_ok(u8)  # uint8 activations with zero points: TensorRT would reject them
    with pytest.raises(ConfigError, match="signed int8 with zero point 0"):
        build_settings(prof, specs, u8, None)
    with pytest.raises(ConfigError, match="runs TensorRT, whose explicit quantization takes signed int8"):
        get_pass("ptq_int8").apply(digits_onnx, build_pass_config("ptq_int8", {"activation_type": "uint8"}), ctx)


def test_the_shape_profile_covers_every_batch_that_will_run():
    prof = load_profile("jetson-orin-trt")
    specs = [InputSpec(name="input", shape=["batch", 1, 8, 8])]
    rng = shape_ranges(specs, prof.batch_sizes)["input"]
    assert rng.opt[0] == prof.batch_sizes[0]
    assert all(rng.min[0] <= b <= rng.max[0] for b in [*prof.batch_sizes, EVAL_BATCH])


def test_the_shape_profile_takes_a_single_sample_whatever_the_batch_sizes():
    (rng,) = shape_ranges([InputSpec(name="x", shape=["batch", 3])], [8, 16]).values()
    assert rng.min[0] == 1 and rng.opt[0] == 8 and rng.max[0] == max(16, EVAL_BATCH)


def _qdq_model(path, zero_point, scale=0.1, quant_zero=True):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(scale, np.float32), "s")]
    q_inputs = ["x", "s"]
    if zero_point is not None:
        inits.append(numpy_helper.from_array(np.array(0, zero_point), "zp"))
        q_inputs.append("zp")
    nodes = [helper.make_node("QuantizeLinear", q_inputs, ["q"], name="q"), helper.make_node("DequantizeLinear", ["q", *q_inputs[1:]], ["y"], name="dq")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize("zero_point, scale, ok", [(np.int8, 0.1, True), (np.uint8, 0.1, False), (None, 0.1, False), (np.int8, 0.0, False)])
def test_every_qdq_node_is_checked_for_what_tensorrt_takes(tmp_path, zero_point, scale, ok):
    from edgesmith.runtime.tensorrt import qdq_zero_points_ok

    _qdq_model(tmp_path / "m.onnx", zero_point, scale)
    assert (qdq_zero_points_ok(tmp_path / "m.onnx") == []) is ok  # no zero point: ONNX makes uint8, which TensorRT refuses


def test_2_to_4_pruned_weights_ask_for_the_sparse_tensor_cores(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgesmith.runtime.tensorrt import has_2to4_sparsity

    rng = np.random.default_rng(0)
    for name, sparse in (("dense", False), ("sparse", True)):
        w = rng.standard_normal((32, 64, 3, 3)).astype(np.float32)
        if sparse:
            w.reshape(32, 16, 4, 9)[:, :, :2, :] = 0  # 2 of every 4 input channels zero, at every tap
        graph = helper.make_graph(
            [helper.make_node("Conv", ["x", "w"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(w, "w")],
        )
        onnx.save(helper.make_model(graph), str(tmp_path / f"{name}.onnx"))
        assert has_2to4_sparsity(tmp_path / f"{name}.onnx") is sparse


def test_an_engine_is_refused_on_another_tensorrt_or_gpu():
    from edgesmith.runtime.tensorrt import check_engine_match

    built = {"tensorrt": "10.3.0", "gpu": "NVIDIA H100 (sm_90)"}
    check_engine_match(built, "10.3.0", "NVIDIA H100 (sm_90)")
    with pytest.raises(ConfigError, match="built with TensorRT 10.3.0 for NVIDIA H100"):
        check_engine_match(built, "10.4.0", "NVIDIA H100 (sm_90)")
    with pytest.raises(ConfigError, match="rebuild"):
        check_engine_match(built, "10.3.0", "NVIDIA L4 (sm_89)")
    with pytest.raises(ConfigError, match="does not say"):
        check_engine_match({}, "10.3.0", "NVIDIA H100 (sm_90)")
