"""Each bad input: one-line error with a hint, exit code 2, nothing written. Through the real CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

RECIPES = {
    "unknown_key.yaml": "model: {source: edgesmith.zoo:digits_cnn}\nfoo: 1\n",
    "wrong_type.yaml": "model: {source: edgesmith.zoo:digits_cnn}\nbench: {iterations: many}\n",
    "unknown_pass.yaml": "model: {source: edgesmith.zoo:digits_cnn}\npasses: [{type: gpfqq}]\n",
    "unknown_option.yaml": "model: {source: edgesmith.zoo:digits_cnn}\npasses: [{type: ptq_int8, calib: entropy}]\n",
    "unknown_profile.yaml": "model: {source: edgesmith.zoo:digits_cnn}\ntargets: [jetson-nano]\n",
    "not_yaml.yaml": "model: {source: edgesmith.zoo:digits_cnn\n  bad",
    "negative_budget.yaml": "model: {source: m.onnx}\ntargets: [{profile: x86-avx512-vnni-ort, budgets: [{metric: top1, goal: max-degradation, value: -1}]}]\n",
}


@pytest.fixture
def workdir(tmp_path, digits_onnx):
    for name, text in RECIPES.items():
        (tmp_path / name).write_text(text)
    good = digits_onnx.read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(good[: len(good) // 3])
    (tmp_path / "garbage.onnx").write_bytes(b"this is not a protobuf")
    shutil.copy(digits_onnx, tmp_path / "m.onnx")
    from edgesmith.data.digits import load_digits_split

    x, y = load_digits_split("train")
    x = x[:100].copy()
    x[12, 0, 3, 4] = np.nan
    x[51, 0, 0, 1] = np.nan
    x[50, 0, 0, 0] = np.inf
    np.savez(tmp_path / "nan.npz", input=x, labels=y[:100])
    import torch

    from edgesmith.zoo import digits_cnn

    torch.save({"state_dict": digits_cnn().state_dict(), "note": Path("objects need unpickling")}, tmp_path / "pickled.pt")
    (tmp_path / "afile").write_text("x")
    _onnx_variants(digits_onnx, tmp_path)
    (tmp_path / "two_ptq.yaml").write_text(
        "model: {source: edgesmith.zoo:digits_cnn}\ndata: {calibration: {source: digits}}\npasses: [{type: ptq_int8}, {type: ptq_int8}]\n"
    )
    return tmp_path


def _onnx_variants(good: Path, folder: Path) -> None:
    """Models the ONNX checker passes that a runtime or quantizer would fail on later, each with its defect."""
    import onnx
    from onnx import TensorProto, helper

    def variant(name, change):
        model = onnx.load(str(good))
        change(model)
        onnx.save(model, str(folder / name))

    variant("opset99.onnx", lambda m: m.opset_import[0].__setattr__("version", 99))
    variant("no_outputs.onnx", lambda m: m.graph.ClearField("output"))
    variant("zero_dim.onnx", lambda m: m.graph.input[0].type.tensor_type.shape.dim[2].__setattr__("dim_value", 0))
    variant("huge_dim.onnx", lambda m: m.graph.input[0].type.tensor_type.shape.dim[2].__setattr__("dim_value", 10**11))
    # an already-quantized model: input -> QuantizeLinear -> DequantizeLinear -> Relu
    scale, zero = helper.make_tensor("s", TensorProto.FLOAT, [], [0.05]), helper.make_tensor("z", TensorProto.UINT8, [], [128])
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
        helper.make_node("Relu", ["dq"], ["out"]),
    ]
    dims = ["batch", 1, 8, 8]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, dims)],
        [scale, zero],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(folder / "qdq.onnx"))


CASES = [
    # (args, fragment expected in the one-line error, fragment expected in its hint)
    (["validate", "missing.onnx"], "ONNX model not found", "check the path"),
    (["validate", "truncated.onnx"], "is not a valid ONNX model", "truncated or corrupt"),
    (["validate", "garbage.onnx"], "is not a valid ONNX model", "truncated or corrupt"),
    (["run", "unknown_key.yaml"], "unknown key 'foo' (allowed: bench, data,", "fix that field"),
    (["run", "wrong_type.yaml"], "bench.iterations: Input should be a valid integer", "fix that field"),
    (["run", "unknown_pass.yaml"], "unknown pass type 'gpfqq'", "did you mean gpfq? `edgesmith passes` lists all"),
    (["run", "unknown_option.yaml"], "unknown option 'calib' (allowed: calibration,", "spelling"),
    (
        ["run", "unknown_profile.yaml"],
        "unknown profile 'jetson-nano'",
        "built-in profiles: arm-cortex-a72-ort, intel-laptop-ov, jetson-orin-trt, x86-avx512-vnni-ort, x86-avx512-vnni-ov",
    ),
    (["run", "not_yaml.yaml"], "is not valid YAML", "indentation"),
    (["run", "missing.yaml"], "recipe not found", "recipe .yaml"),
    (["run", "negative_budget.yaml"], "needs a value >= 0", "fix that field"),
    (["export", "edgesmith.zoo:digits_cnn", "-i", "input:batch,3,8,8"], "does not fit the model: RuntimeError", "--input-shape"),
    (["validate", "m.onnx", "-d", "digits", "-i", "input:batch,3,8,8"], "does not fit the ONNX model's input['batch', 1, 8, 8]", "--input-shape"),
    (
        ["quantize", "edgesmith.zoo:pretrained_digits_cnn", "-d", "nan.npz"],
        "contains 2 NaN and 1 Inf value(s); first at sample 12, position [0, 3, 4]",
        "clean or drop",
    ),
    (["quantize", "edgesmith.zoo:digits_cnn", "-w", "pickled.pt"], "needs full unpickling", "--trust-checkpoint"),
    (["quantize", "edgesmith.zoo:digits_cnn", "-w", "m.onnx"], "m.onnx is not a torch checkpoint: it is an ONNX model", ".safetensors"),
    (["quantize", "edgesmith.zoo:digits_cnn", "-w", "afile"], "afile is not a torch checkpoint: it is neither a zip", "torch.save"),
    (["quantize", "edgesmith.zoo:digits_cnn", "--out", "afile/out"], "cannot be created: ", "choose another --out"),
    (["quantize", "no_such_pkg.models:net"], "cannot import 'no_such_pkg.models'", "module path"),
    (["quantize", "edgesmith.zoo:digits_cnn", "--target", "tgt.json"], "unknown profile 'tgt.json'", "built-in profiles"),
    # models the ONNX checker passes, refused by name before a runtime or quantizer fails on its own temporary files
    (["quantize", "opset99.onnx", "-d", "digits"], "uses ONNX opset 99; the installed onnx", "older opset"),
    (["quantize", "no_outputs.onnx", "-d", "digits"], "declares no graph outputs", "with its outputs"),
    (["bench", "zero_dim.onnx"], "has shape ['batch', 1, 0, 8]: a dimension of size 0", "positive sizes"),
    (["bench", "huge_dim.onnx"], "with shape [1, 1, 100000000000, 8] needs 2980.2 GiB, more than half of this machine's", "fixed dimensions"),
    (
        ["quantize", "qdq.onnx", "-d", "digits", "--metric", "fidelity"],
        "'auto_int8' quantizes a float model, and qdq.onnx is already quantized",
        "give the float",
    ),
    (
        ["quantize", "qdq.onnx", "-d", "digits", "--mode", "dynamic"],
        "'dynamic_int8' quantizes a float model, and qdq.onnx is already quantized (1 Dequant",
        "drop",
    ),
    (["run", "two_ptq.yaml"], "'ptq_int8' quantizes a float graph, and 'ptq_int8' before it already made it int8", "list 'ptq_int8' once"),
    (["run", "two_ptq.yaml", "--dry-run"], "'ptq_int8' quantizes a float graph", "list 'ptq_int8' once"),
]


@pytest.mark.parametrize("args,message,hint", CASES, ids=[" ".join(c[0][:2]) + f"-{i}" for i, c in enumerate(CASES)])
def test_bad_input_gives_one_line_error_exit_2_and_writes_nothing(cli, workdir, args, message, hint):
    before = sorted(p.name for p in workdir.iterdir())
    result = cli(*args, cwd=workdir)
    assert result.code == 2, result.stderr
    assert len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    text, _, hint_text = line.partition("(hint:")
    assert message in text, line
    assert hint in hint_text, line
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in workdir.iterdir()) == before  # nothing written, not even an empty output dir


def test_torch_pass_order_and_onnx_model_are_explained():
    from edgesmith.errors import ConfigError
    from edgesmith.pipeline import check_pass_order
    from edgesmith.recipe import parse_recipe

    recipe = parse_recipe({"model": {"source": "m.onnx"}, "passes": [{"type": "ptq_int8"}]})
    check_pass_order(recipe, "onnx")  # ONNX-level passes apply to ONNX input: no error
    # a torch-level pass (rtn) on ONNX input is refused with what to do instead
    recipe = parse_recipe({"model": {"source": "m.onnx"}, "passes": [{"type": "rtn"}]})
    with pytest.raises(ConfigError, match="works on torch models, but the model is an ONNX file"):
        check_pass_order(recipe, "onnx")
    recipe = parse_recipe({"model": {"source": "a:b"}, "passes": [{"type": "fp16"}, {"type": "rtn"}]})
    with pytest.raises(ConfigError, match="comes after ONNX pass 'fp16'"):
        check_pass_order(recipe, "torch")


def _blocking_package(tmp_path: Path, name: str) -> dict:
    pkg = tmp_path / "blocked" / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"raise ImportError('{name} blocked by the test')\n")
    return {"PYTHONPATH": str(tmp_path / "blocked")}


def test_missing_package_names_what_to_install(cli, tmp_path):
    result = cli("export", "edgesmith.zoo:digits_cnn", env=_blocking_package(tmp_path, "onnxscript"))
    assert result.code == 2, result.stderr
    assert "onnxscript is not installed or failed to import" in result.error_lines[0]
    assert "hint: pip install 'edgesmith[build]'" in result.error_lines[0]
    assert not (tmp_path / "edgesmith-out").exists()


def test_missing_optional_runtime_names_its_extra(tmp_path):
    import subprocess
    import sys

    code = (
        "from edgesmith._lazy import require\nfrom edgesmith.errors import BackendUnavailable\n"
        "try:\n    require('openvino')\nexcept BackendUnavailable as e:\n    print(e.one_line())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**__import__("os").environ, **_blocking_package(tmp_path, "openvino")}
    )
    assert "openvino is not installed" in out.stdout and "pip install 'edgesmith[openvino]'" in out.stdout


def test_trusted_checkpoint_loads_when_asked(workdir):
    from edgesmith.model_io import load_state_dict

    state = load_state_dict(workdir / "pickled.pt", trust_checkpoint=True)
    assert "0.weight" in state


def test_top1_without_labels_is_refused_before_any_work(cli, tmp_path):
    np.savez(tmp_path / "nolabels.npz", input=np.zeros((8, 1, 8, 8), dtype=np.float32))
    # asked for by name, top-1 without labels is refused (the default, --metric auto, falls back to fidelity)
    result = cli("quantize", "edgesmith.zoo:pretrained_digits_cnn", "-d", "nolabels.npz", "--metric", "top1", cwd=tmp_path)
    assert result.code == 2
    assert "metric top1 needs labels" in result.error_lines[0] and "--metric fidelity" in result.error_lines[0]
    assert "exporting" not in result.stderr
