"""TensorRT backend: what runs without TensorRT (settings, shape profiles, calibration batching) and a
clean failure without it. The engine path itself was never executed here (no TensorRT, no GPU)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from edgesmith.errors import BackendUnavailable, ConfigError
from edgesmith.profiles import load_profile
from edgesmith.recipe import InputSpec
from edgesmith.runtime.tensorrt import CalibrationBatcher, ShapeRange, build_settings, shape_ranges

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
    assert shape_ranges(specs, [1, 8]) == {"input": ShapeRange((1, 3, 224, 224), (1, 3, 224, 224), (8, 3, 224, 224))}
    assert shape_ranges(specs, [4, 1, 16])["input"].opt == (4, 3, 224, 224)  # opt = the first (latency) batch


def test_other_dynamic_dimensions_need_a_range_from_the_profile():
    specs = [InputSpec(name="ids", shape=["batch", "seq"], dtype="int64")]
    with pytest.raises(ConfigError, match=r"dynamic dimension 'seq' \(axis 1\) and the profile gives no range"):
        shape_ranges(specs, [1])
    got = shape_ranges(specs, [1, 4], {"ids": {"seq": [16, 128, 512]}})
    assert got["ids"] == ShapeRange((1, 16), (1, 128), (4, 512))
    with pytest.raises(ConfigError, match="1 <= min <= opt <= max"):
        shape_ranges(specs, [1], {"ids": {"seq": [128, 16, 512]}})


def test_build_settings_translate_the_profile(tmp_path, digits_onnx):
    from edgesmith.compress import PassContext, build_pass_config, get_pass
    from edgesmith.data import load_dataset

    prof = load_profile("jetson-orin-trt")
    specs = [InputSpec(name="input", shape=["batch", 1, 8, 8])]
    calib = load_dataset("digits", specs, role="calibration", samples=64)
    implicit = build_settings(prof, specs, digits_onnx, calib)
    assert implicit.fp16 and implicit.int8 and implicit.int8_mode == "calibrator"
    assert implicit.workspace_bytes == 1024 * 2**20
    assert implicit.shapes["input"].max == (8, 1, 8, 8)
    assert build_settings(prof, specs, digits_onnx, None).int8_mode == "none"  # no data, no calibration
    ctx = PassContext(work_dir=tmp_path, profile=prof, input_specs=tuple(specs), calibration=calib)
    qdq = get_pass("ptq_int8").apply(digits_onnx, build_pass_config("ptq_int8", {}), ctx)
    assert build_settings(prof, specs, qdq, None).int8_mode == "explicit"  # Q/DQ in the model: no calibrator


def test_calibration_batches_are_fixed_size_contiguous_float32():
    from edgesmith.data.sources import Dataset, split_batches

    x = np.arange(70 * 4, dtype=np.float64).reshape(70, 4)
    ds = Dataset("x", split_batches({"input": x}, None, 32))
    batches = list(CalibrationBatcher(ds, ["input"], 16))
    assert len(batches) == 4  # 70 samples -> 4 full batches of 16, remainder left out
    assert all(b["input"].shape == (16, 4) and b["input"].dtype == np.float32 and b["input"].flags.c_contiguous for b in batches)
    np.testing.assert_array_equal(batches[1]["input"], x[16:32].astype(np.float32))
    with pytest.raises(ConfigError, match="at least 128 samples"):
        CalibrationBatcher(ds, ["input"], 128)
