"""The hook later torch-level passes (GPFQ, pruning, binarization) plug into: one file, one config,
one apply, run on the nn.Module before export. Exercised here with a pass defined in the test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import pytest

from edgesmith import pipeline
from edgesmith.compress.registry import PassInfo, register_pass, unregister_pass
from edgesmith.recipe import parse_recipe


@dataclass(frozen=True)
class ShiftHeadConfig:
    shift: float = 1.0


def shift_head_(model, cfg, ctx):
    """Adds ``shift`` to the classifier bias in place (a trailing _ means in-place)."""
    import torch

    # NOTE: by parameter name, because a .pt2 program's module() is a GraphModule without nn.Linear children
    bias = [p for name, p in model.named_parameters() if name.endswith("bias")][-1]
    with torch.no_grad():
        bias.add_(cfg.shift)
    ctx.note(f"shifted the head by {cfg.shift}")
    return model


@pytest.fixture
def shift_pass():
    register_pass(PassInfo("shift_head", "torch", ShiftHeadConfig, shift_head_, "test pass"))
    yield
    unregister_pass("shift_head")


@pytest.mark.parametrize("source", ["edgesmith.zoo:pretrained_digits_cnn", "digits.pt2"])
def test_torch_pass_changes_what_is_exported(shift_pass, tmp_path, digits_onnx, source):
    import torch

    from edgesmith.zoo import pretrained_digits_cnn

    if source.endswith(".pt2"):
        program = torch.export.export(pretrained_digits_cnn(), (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(program, str(tmp_path / "digits.pt2"))
    recipe = parse_recipe({"model": {"source": source}, "passes": [{"type": "shift_head", "shift": 2.5}], "stop_after": "export", "output_dir": "out"})
    pipeline.run(recipe, tmp_path)
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {ort.InferenceSession(str(p)).get_inputs()[0].name: x})[0]  # noqa: E731
    np.testing.assert_allclose(run(tmp_path / "out" / "model.torch_passes.onnx") - run(digits_onnx), 2.5, atol=1e-4)
    # the float model stays the reference: exported before the pass, unchanged by it
    np.testing.assert_allclose(run(tmp_path / "out" / "model.onnx"), run(digits_onnx), atol=1e-4)


def test_torch_pass_is_judged_against_the_float_model(shift_pass, tmp_path):
    recipe = parse_recipe(
        {
            "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
            "passes": [{"type": "shift_head", "shift": 3.0}],
            "targets": [{"profile": "x86-avx512-vnni-ort", "batch_sizes": [1]}],
            "bench": {"warmup": 1, "iterations": 5},
            "output_dir": "out",
        }
    )
    target = pipeline.run(recipe, tmp_path).manifest["targets"]["x86-avx512-vnni-ort"]
    assert target["metrics"]["sqnr_db"] < 40  # a constant shift on every logit is visible against the float model
    assert "shifted the head by 3.0" in target["notes"]
