"""TensorRT backend: what runs without TensorRT (settings, shape profiles, calibration batching) and a
clean failure without it. The engine path itself was never executed here (no TensorRT, no GPU)."""

from __future__ import annotations

import importlib.util

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
