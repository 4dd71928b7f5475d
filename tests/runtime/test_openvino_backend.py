"""OpenVINO backend: IR compilation, agreement with torch and ONNX Runtime, INT8 paths, bad input."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("openvino")

from edgesmith.compress import PassContext, build_pass_config, get_pass  # noqa: E402
from edgesmith.data import load_dataset  # noqa: E402
from edgesmith.errors import ConfigError  # noqa: E402
from edgesmith.export import export_onnx  # noqa: E402
from edgesmith.profiles import load_profile  # noqa: E402
from edgesmith.recipe import InputSpec  # noqa: E402
from edgesmith.runtime import get_backend  # noqa: E402
from edgesmith.runtime.onnxruntime import OrtSession  # noqa: E402

SPEC = [InputSpec(name="input", shape=["batch", 1, 8, 8])]
IMG = [InputSpec(name="input", shape=["batch", 3, 224, 224])]


def _compile_run(onnx_path, tmp_path, x, name="m"):
    ov = get_backend("openvino")
    prof = load_profile("x86-avx512-vnni-ov")
    art = ov.compile(onnx_path, tmp_path / f"{name}.openvino.xml", prof)
    assert art.path.is_file() and art.path.with_suffix(".bin").is_file()
    return art, ov.load(art, prof.threads).run({"input": x})[0]


@pytest.mark.parametrize("factory,spec,batch", [("pretrained_digits_cnn", SPEC, 16), ("resnet18", IMG, 2), ("mobilenet_v2", IMG, 2)])
def test_torch_onnxruntime_and_openvino_agree_in_fp32(tmp_path, factory, spec, batch):
    import torch

    from edgesmith import zoo

    model = getattr(zoo, factory)()
    shape = [batch] + list(spec[0].shape[1:])
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    path = export_onnx(model, spec, tmp_path / "m.onnx")
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    ort_out = OrtSession(path, 2, "all").run({"input": x})[0]
    _, ov_out = _compile_run(path, tmp_path, x)
    scale = np.abs(ref).max()
    # stated tolerance: 1e-3 of the output range (fused kernels reorder float sums)
    assert np.abs(ort_out - ref).max() / scale < 1e-3
    assert np.abs(ov_out - ref).max() / scale < 1e-3


@pytest.fixture(scope="module")
def calib():
    return load_dataset("digits", SPEC, role="calibration", samples=300)


@pytest.mark.parametrize("pass_name", ["ptq_int8", "nncf_ptq"])
def test_int8_on_openvino_keeps_digits_accuracy_and_agrees_with_onnxruntime(tmp_path, digits_onnx, digits_test, calib, pass_name):
    ctx = PassContext(work_dir=tmp_path, profile=load_profile("x86-avx512-vnni-ov"), input_specs=tuple(SPEC), calibration=calib)
    qdq = get_pass(pass_name).apply(digits_onnx, build_pass_config(pass_name, {}), ctx)
    x, y = digits_test
    art, ov_logits = _compile_run(qdq, tmp_path, x, "q")
    assert art.options["int8_from"] == f"QDQ ONNX from a quantization pass ({pass_name})"
    fp32 = OrtSession(digits_onnx, 2, "all").run({"input": x})[0]
    ort_logits = OrtSession(qdq, 2, "all").run({"input": x})[0]
    top1 = lambda logits: (logits.argmax(1) == y).mean() * 100  # noqa: E731
    assert top1(fp32) - top1(ov_logits) <= 0.5
    assert (ov_logits.argmax(1) == ort_logits.argmax(1)).mean() > 0.98  # same QDQ model, two runtimes


def test_openvino_executes_int8_layers(tmp_path, digits_onnx, calib):
    """The compiled model's runtime graph runs convolutions in u8/i8, not f32."""
    import openvino as ov

    ctx = PassContext(work_dir=tmp_path, profile=load_profile("x86-avx512-vnni-ov"), input_specs=tuple(SPEC), calibration=calib)
    qdq = get_pass("ptq_int8").apply(digits_onnx, build_pass_config("ptq_int8", {}), ctx)
    art, _ = _compile_run(qdq, tmp_path, np.zeros((1, 1, 8, 8), np.float32), "q")
    compiled = ov.Core().compile_model(str(art.path), "CPU")
    runtime = compiled.get_runtime_model()
    conv_precisions = {
        op.get_rt_info()["runtimePrecision"].astype(str) for op in runtime.get_ops() if op.get_rt_info()["layerType"].astype(str) == "Convolution"
    }
    assert conv_precisions and conv_precisions <= {"u8", "i8"}


def test_unknown_device_lists_the_available_ones(tmp_path, digits_onnx):
    data = load_profile("x86-avx512-vnni-ov").model_dump()
    data["device"] = "npu"
    from edgesmith.profiles.schema import Profile

    with pytest.raises(ConfigError, match=r"OpenVINO has no device 'npu' on this machine \(hint: available devices: CPU"):
        get_backend("openvino").compile(digits_onnx, tmp_path / "x.xml", Profile.model_validate(data))


def test_bench_runs_an_ir_and_refuses_the_wrong_backend(cli, tmp_path, digits_onnx):
    import json

    art, _ = _compile_run(digits_onnx, tmp_path, np.zeros((1, 1, 8, 8), np.float32))
    ok = cli("bench", art.path, "--target", "x86-avx512-vnni-ov", "--iterations", "20", "--json")
    assert ok.code == 0, ok.stderr
    rows = json.loads(ok.stdout)
    assert [r["batch"] for r in rows] == [1, 8] and all(r["backend"] == "openvino" and r["threads"] == 2 for r in rows)
    wrong = cli("bench", art.path, "--backend", "onnxruntime")
    assert wrong.code == 2 and "is an artifact for openvino; the onnxruntime backend cannot run it" in wrong.error_lines[0]


def test_profile_naming_a_missing_runtime_names_the_extra(cli, tmp_path):
    pkg = tmp_path / "blocked" / "openvino"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('openvino blocked by the test')\n")
    result = cli("quantize", "edgesmith.zoo:pretrained_digits_cnn", "-t", "x86-avx512-vnni-ov", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "blocked")})
    assert result.code == 2, result.stderr
    assert "openvino is not installed" in result.error_lines[0] and "pip install 'edgesmith[openvino]'" in result.error_lines[0]
    assert not (tmp_path / "edgesmith-out").exists()


def test_pipeline_on_the_openvino_profile_reports_where_int8_came_from(tmp_path):
    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe

    recipe = parse_recipe(
        {
            "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
            "data": {"calibration": {"source": "digits", "samples": 256}, "evaluation": {"source": "digits", "split": "test"}},
            "passes": [{"type": "ptq_int8"}],
            "targets": [{"profile": "x86-avx512-vnni-ov", "batch_sizes": [1]}],
            "bench": {"warmup": 2, "iterations": 20},
            "output_dir": "out",
        }
    )
    manifest = pipeline.run(recipe, tmp_path).manifest
    target = manifest["targets"]["x86-avx512-vnni-ov"]
    assert "openvino INT8 source: QDQ ONNX from a quantization pass (ptq_int8)" in target["notes"]
    assert target["reference_metrics"]["top1"] - target["metrics"]["top1"] <= 0.5
    assert {"x86-avx512-vnni-ov/model.openvino.xml", "x86-avx512-vnni-ov/model.openvino.bin"} <= set(manifest["outputs"])
