"""The binarize pass: a digits BNN trained in a small budget beats chance by a wide margin (fixed seed), its
binary layers are ≥ 20x smaller bit-packed, each baked layer equals α times the compiled XNOR-popcount
kernel's integer convolution, layers the kernels cannot run are listed and kept float, and the exported
standard-op lowering runs on ONNX Runtime and OpenVINO through the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgesmith.compress import build_pass_config, get_pass
from edgesmith.compress.registry import PassContext
from edgesmith.schema import InputSpec

SPEC = (InputSpec(name="input", shape=["batch", 1, 8, 8], dtype="float32"),)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from edgesmith.data.sources import load_dataset
    from edgesmith.zoo import pretrained_digits_cnn

    torch.manual_seed(0)
    data = load_dataset("digits", SPEC, role="calibration", split="train")
    ctx = PassContext(work_dir=tmp_path_factory.mktemp("bnn"), input_specs=SPEC, calibration=data)
    cfg = build_pass_config("binarize", {"recover": {"steps": 100, "eval_every": 25, "alpha": 0.5, "lr": 0.005, "seed": 0}})
    return get_pass("binarize").apply(pretrained_digits_cnn(), cfg, ctx), ctx


def test_digits_bnn_beats_chance_by_a_wide_margin(trained):
    from edgesmith.data.digits import load_digits_split

    model, ctx = trained
    x, y = load_digits_split("test")
    with torch.no_grad():
        acc = float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    assert acc > 0.9  # chance is 0.1; 100 steps of distillation
    d = ctx.details["binarize"]
    assert d["binary_layers"] == ["3", "7"] and d["kept_float"] == ["0", "12"]  # first conv and classifier stay float


def test_binary_layers_are_over_20x_smaller_packed(trained):
    d = trained[1].details["binarize"]
    assert d["binary_layers_ratio"] >= 20 and d["model_packed_bytes"] < d["model_fp32_bytes"] / 10


def test_baked_layer_equals_alpha_times_the_kernel(trained):
    from edgesmith.runtime.kernels import binary as B

    model, _ = trained
    layer = dict(model.named_modules())["7"]  # a baked binary conv: sign(x - beta) then ±alpha weights
    x = torch.randn(2, layer.layer.in_channels, 4, 4)
    with torch.no_grad():
        want = layer(x).numpy()
    w = layer.layer.weight.detach().numpy()
    alpha = np.abs(w).reshape(w.shape[0], -1).mean(1)
    shifted = (x - layer.beta.view(1, -1, 1, 1)).numpy()
    conv = layer.layer
    ints = B.conv2d_groups(shifted, w, conv.groups, stride=conv.stride, padding=conv.padding, dilation=conv.dilation, threads=2)
    got = ints * alpha.reshape(1, -1, 1, 1) + (conv.bias.detach().numpy().reshape(1, -1, 1, 1) if conv.bias is not None else 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_layers_the_kernels_cannot_run_are_listed_and_kept_float(tmp_path):
    class Mixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(8, 16)
            self.b = torch.nn.Conv1d(1, 4, 3, padding=1)
            self.c = torch.nn.Linear(64, 16)
            self.d = torch.nn.Linear(16, 3)

        def forward(self, x):
            h = self.b(self.a(x).unsqueeze(1)).flatten(1)
            return self.d(self.c(h))

    spec = (InputSpec(name="input", shape=["batch", 8], dtype="float32"),)
    ctx = PassContext(work_dir=tmp_path, input_specs=spec)
    model = get_pass("binarize").apply(Mixed(), build_pass_config("binarize", {"recover": None}), ctx)
    assert ctx.details["binarize"]["unsupported_kept_float"] == ["b"] and ctx.details["binarize"]["binary_layers"] == ["c"]
    assert "cannot be binarized, kept in float: b" in ctx.notes[-1]
    assert model(torch.randn(2, 8)).shape == (2, 3)


def test_binarized_model_exports_and_runs_on_both_runtimes(tmp_path):
    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe

    steady = [{"metric": "speedup_vs_fp32", "goal": "min", "value": 0.0, "batch": 1}]
    r = parse_recipe(
        {
            "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
            "output_dir": "bnn",
            "passes": [{"type": "binarize", "recover": {"steps": 60, "eval_every": 30, "alpha": 0.5, "lr": 0.005}}],
            "targets": [
                {"profile": "x86-avx512-vnni-ort", "batch_sizes": [1], "budgets": steady},
                {"profile": "x86-avx512-vnni-ov", "batch_sizes": [1], "budgets": steady},
            ],
        },
        "t",
    )
    pipeline.run(r, tmp_path)
    m = json.loads((tmp_path / "bnn" / "manifest.json").read_text())
    assert m["export_after_torch_passes"]["parity_max_abs"] < 1e-3
    for t in m["targets"].values():
        assert t["metrics"]["top1"] > 85 and t["details"]["binarize"]["binary_layers_ratio"] >= 20


def test_packed_custom_op_equals_the_lowering_and_runs_on_the_kernel(trained, tmp_path):
    """pack_binary turns binarize's lowering into edgesmith.BinaryConv with bit-packed weights: ORT runs it on
    the compiled kernel and agrees with the standard-op graph it came from and with the lowering back."""
    import onnx

    from edgesmith.compress.pack_binary import pack
    from edgesmith.export import export_onnx

    model, _ = trained
    std = tmp_path / "bnn.onnx"
    export_onnx(model, list(SPEC), std)
    packed, replaced = pack(onnx.load(str(std)))
    assert len(replaced) == 2 and {n.op_type for n in packed.graph.node if n.domain == "edgesmith"} == {"BinaryConv"}
    onnx.save(packed, str(tmp_path / "packed.onnx"))
    assert (tmp_path / "packed.onnx").stat().st_size < std.stat().st_size / 8
    _packed_agrees_everywhere(packed, std, np.random.default_rng(1).standard_normal((7, 1, 8, 8)).astype(np.float32), tmp_path, 2)


def test_pipeline_binarize_then_pack_runs_on_both_runtimes(tmp_path):
    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe

    steady = [{"metric": "speedup_vs_fp32", "goal": "min", "value": 0.0, "batch": 1}]
    r = parse_recipe(
        {
            "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
            "output_dir": "packed",
            "passes": [{"type": "binarize", "recover": {"steps": 60, "eval_every": 30, "alpha": 0.5, "lr": 0.005}}, {"type": "pack_binary"}],
            "targets": [
                {"profile": "x86-avx512-vnni-ort", "batch_sizes": [1], "budgets": steady},
                {"profile": "x86-avx512-vnni-ov", "batch_sizes": [1], "budgets": steady},
            ],
        },
        "t",
    )
    pipeline.run(r, tmp_path)
    m = json.loads((tmp_path / "packed" / "manifest.json").read_text())
    for t in m["targets"].values():
        assert len(t["details"]["pack_binary"]["layers"]) == 2 and t["metrics"]["top1"] > 85
    assert "BinaryConv" in (tmp_path / "packed" / "x86-avx512-vnni-ort" / "model.binary.onnx").read_bytes().decode("latin1")
    ir = (tmp_path / "packed" / "x86-avx512-vnni-ov" / "model.openvino.xml").read_text()
    assert ir.count('type="BinaryConv" version="edgesmith"') == 2  # the IR keeps the op: OpenVINO runs the kernel


def test_a_runtime_without_the_binary_op_is_told_to_lower_it(trained, tmp_path):
    """TensorRT has no registration for the edgesmith domain: one clear message naming the standard-op lowering."""
    import onnx

    from edgesmith.compress.pack_binary import pack
    from edgesmith.errors import BackendUnavailable
    from edgesmith.export import export_onnx
    from edgesmith.runtime.custom_ops import apply_registrations

    export_onnx(trained[0], list(SPEC), tmp_path / "bnn.onnx")
    packed, _ = pack(onnx.load(str(tmp_path / "bnn.onnx")))
    onnx.save(packed, str(tmp_path / "packed.onnx"))
    with pytest.raises(BackendUnavailable, match="tensorrt has no registration for custom op domain 'edgesmith' \\(BinarySign, BinaryConv\\)") as exc:
        apply_registrations("tensorrt", object(), tmp_path / "packed.onnx")
    assert "lower_custom_ops" in exc.value.hint


def test_the_kernel_path_is_in_the_report(tmp_path):
    """pack_binary says which kernel path this CPU gets (AVX-512 VPOPCNTDQ or the portable fallback)."""
    from edgesmith.runtime.kernels.binary import has_vpopcntdq

    ctx = PassContext(work_dir=tmp_path, input_specs=SPEC)
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["y"])],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "plain.onnx"))
    get_pass("pack_binary").apply(tmp_path / "plain.onnx", build_pass_config("pack_binary", {}), ctx)
    assert ctx.details["pack_binary"]["layers"] == [] and "no binary convolution found" in ctx.notes[0]
    assert ctx.details["pack_binary"]["kernel"].startswith("AVX-512" if has_vpopcntdq() else "the portable popcount")


def test_binary_linear_layers_are_packed_too_and_equal_their_lowering(tmp_path):
    """A binarized MLP: its hidden Linear layers (Gemm on a sign) become 1x1 BinaryConv between Unsqueeze and
    Flatten, bit-packed; ONNX Runtime (kernel) and OpenVINO (extension) agree with the standard-op graph."""
    import onnx

    from edgesmith.compress.pack_binary import pack
    from edgesmith.data.sources import load_dataset
    from edgesmith.export import export_onnx

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(64, 96),
        torch.nn.ReLU(),
        torch.nn.Linear(96, 80),
        torch.nn.ReLU(),
        torch.nn.Linear(80, 72),
        torch.nn.ReLU(),
        torch.nn.Linear(72, 10),
    )
    data = load_dataset("digits", SPEC, role="calibration", split="train")
    ctx = PassContext(work_dir=tmp_path, input_specs=SPEC, calibration=data)
    cfg = build_pass_config("binarize", {"recover": {"steps": 20, "eval_every": 10, "seed": 0}})
    model = get_pass("binarize").apply(mlp, cfg, ctx)
    std = tmp_path / "mlp.onnx"
    export_onnx(model, list(SPEC), std)
    packed, replaced = pack(onnx.load(str(std)))
    assert len(replaced) == 2, replaced  # the two hidden layers; first and last stay float
    ops = [n.op_type for n in packed.graph.node]
    assert ops.count("BinaryConv") == 2 and "Unsqueeze" in ops and "Flatten" in ops
    _packed_agrees_everywhere(packed, std, np.random.default_rng(2).standard_normal((9, 1, 8, 8)).astype(np.float32), tmp_path, 2)


def test_biprop_masks_keep_the_share_asked_and_stay_in_the_lowering(tmp_path):
    """mask: a learned Biprop mask keeps the asked share of each binary layer's weights (ternary −α/0/+α); the
    model still beats chance by a wide margin, and pack_binary leaves such layers to the standard ops."""
    import onnx

    from edgesmith.compress.pack_binary import pack
    from edgesmith.data.sources import load_dataset
    from edgesmith.export import export_onnx
    from edgesmith.zoo import pretrained_digits_cnn

    torch.manual_seed(0)
    data = load_dataset("digits", SPEC, role="calibration", split="train")
    test = load_dataset("digits", SPEC, role="evaluation", split="test")
    ctx = PassContext(work_dir=tmp_path, input_specs=SPEC, calibration=data)
    cfg = build_pass_config("binarize", {"mask": 0.5, "recover": {"steps": 100, "eval_every": 25, "alpha": 0.5, "lr": 0.005, "seed": 0}})
    model = get_pass("binarize").apply(pretrained_digits_cnn(), cfg, ctx)
    for name in ctx.details["binarize"]["binary_layers"]:
        w = model.get_submodule(name).layer.weight.detach()
        assert abs(float((w == 0).float().mean()) - 0.5) < 0.01, name
        assert torch.unique(w.abs()[w != 0].reshape(w.shape[0], -1).max(1).values).numel() >= 1
    x, y = test.first(test.num_samples)["input"], test.labels()
    with torch.no_grad():
        top1 = float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    assert top1 > 0.5, top1  # chance is 0.1
    assert "Biprop masks keep 50%" in " ".join(ctx.notes)
    export_onnx(model, list(SPEC), tmp_path / "m.onnx")
    _, replaced = pack(onnx.load(str(tmp_path / "m.onnx")))
    assert replaced == []
    from edgesmith.errors import ConfigError

    with pytest.raises(ConfigError, match="share of weights kept"):
        build_pass_config("binarize", {"mask": 1.5})


def _packed_agrees_everywhere(packed, std: Path, x: np.ndarray, tmp_path: Path, binary_ops: int) -> None:
    """The packed model on ONNX Runtime (the kernel through onnxruntime-extensions) equals the standard-op graph it
    came from and the lowering back; on OpenVINO the compiled extension keeps ``binary_ops`` BinaryConv ops and
    runs the same kernel in evaluate(), with the same outputs."""
    import onnx
    import onnxruntime as ort
    import openvino as ov

    from edgesmith.runtime.custom_ops import apply_registrations, lower_model
    from edgesmith.runtime.kernels.ov_extension import library_path

    onnx.save(packed, str(tmp_path / "packed.onnx"))
    lowered, _ = lower_model(packed)
    onnx.save(lowered, str(tmp_path / "lowered.onnx"))
    so = ort.SessionOptions()
    apply_registrations("onnxruntime", so, tmp_path / "packed.onnx")
    got = ort.InferenceSession(str(tmp_path / "packed.onnx"), so, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]  # noqa: E731
    np.testing.assert_allclose(got, run(std), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, run(tmp_path / "lowered.onnx"), rtol=1e-5, atol=1e-5)
    core = ov.Core()
    core.add_extension(library_path())
    ov_model = core.read_model(str(tmp_path / "packed.onnx"))
    assert sum(op.get_type_name() == "BinaryConv" for op in ov_model.get_ops()) == binary_ops
    compiled = core.compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    np.testing.assert_allclose(compiled({0: x})[0], got, rtol=1e-5, atol=1e-5)
