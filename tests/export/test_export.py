from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgesmith.export import check_parity, export_onnx
from edgesmith.recipe import InputSpec

SPEC = [InputSpec(name="input", shape=["batch", 1, 8, 8])]


@pytest.fixture(scope="module")
def model():
    from edgesmith.zoo import pretrained_digits_cnn

    return pretrained_digits_cnn()


def test_export_has_dynamic_batch_and_passes_checker(model, digits_onnx, digits_test):
    m = onnx.load(str(digits_onnx))
    onnx.checker.check_model(m, full_check=True)
    dim0 = m.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param and not dim0.HasField("dim_value")
    sess = ort.InferenceSession(str(digits_onnx), providers=["CPUExecutionProvider"])
    x = digits_test[0]
    for batch in (1, 7, 64):
        assert sess.run(None, {"input": x[:batch]})[0].shape == (batch, 10)


def test_parity_on_real_digits_within_tolerance(model, digits_onnx, digits_test):
    result = check_parity(model, digits_onnx, {"input": digits_test[0][:64]}, SPEC, atol=1e-4, rtol=1e-3)
    assert result.ok and result.max_abs < 1e-4 and result.samples == 64


def test_parity_failure_reports_by_how_much(model, digits_onnx, digits_test):
    import torch

    broken = type(model)(*list(model.children()))
    with torch.no_grad():
        broken[-1].bias.add_(0.5)  # the torch side no longer matches the exported file
    result = check_parity(broken, digits_onnx, {"input": digits_test[0][:8]}, SPEC, atol=1e-4, rtol=1e-3)
    assert not result.ok
    assert result.max_abs == pytest.approx(0.5, abs=1e-3)
    assert "max |torch - onnx| = 0.5" in result.describe()
    with torch.no_grad():
        broken[-1].bias.sub_(0.5)


def test_torchscript_exporter_also_works(model, tmp_path, digits_test):
    path = export_onnx(model, SPEC, tmp_path / "ts.onnx", opset=17, exporter="torchscript")
    assert check_parity(model, path, {"input": digits_test[0][:16]}, SPEC, 1e-4, 1e-3).ok


def test_torch_export_program_input(tmp_path, digits_test):
    """A .pt2 program goes through the pipeline like a factory model."""
    import torch

    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe
    from edgesmith.zoo import pretrained_digits_cnn

    model = pretrained_digits_cnn()
    program = torch.export.export(model, (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(tmp_path / "digits.pt2"))
    recipe = parse_recipe({"model": {"source": "digits.pt2"}, "stop_after": "export", "output_dir": "out"})
    result = pipeline.run(recipe, tmp_path)
    assert result.manifest["export"]["parity_max_abs"] < 1e-4
    sess = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: digits_test[0][:100]})[0]
    assert (logits.argmax(1) == digits_test[1][:100]).mean() > 0.95


def test_multi_output_model_exports_every_output(tmp_path):
    import torch

    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.a, self.b = torch.nn.Linear(256, 10), torch.nn.Linear(256, 3)

        def forward(self, x):
            h = torch.relu(self.body(x)).flatten(1)
            return self.a(h), self.b(h)

    m = TwoHeads().eval()
    path = export_onnx(m, SPEC, tmp_path / "two.onnx")
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["output_0", "output_1"]
    assert check_parity(m, path, {"input": np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)}, SPEC, 1e-4, 1e-3).ok
