"""A user's model and data that do not go together: each way is named as bad input (exit 2), never an ONNX
Runtime exception or an assertion from its quantizer (exit 3), whichever stage meets it first."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgesmith.errors import InputError


class _Embed(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.e = torch.nn.Embedding(10, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.e(ids).mean(1)


class _NanOut(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * float("nan")


class _Nothing(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> None:
        return None


IDS = torch.zeros(1, 5, dtype=torch.long)
IMAGE = torch.randn(1, 1, 8, 8)
IMAGES = np.random.default_rng(0).random((40, 1, 8, 8), dtype=np.float32)


@pytest.mark.parametrize(
    "model, example, data, message",
    [
        (_Embed, IDS, np.full((20, 5), 99, np.int64), r"ONNX Runtime refused the data at node .*out of data bounds"),  # token id past the vocabulary
        (_Embed, IDS, np.random.default_rng(0).random((20, 5)), r"holds 0\.\d+, not a whole number"),  # floats for token ids: were truncated to 0
        (_Embed, IDS, np.full((20, 5), np.nan), r"holds nan, not a whole number"),  # was cast to -2**63 before the NaN check
        (_Embed, IDS, np.full((20, 5), 2.0**70), r"beyond int64's range"),
        (_NanOut, IMAGE, IMAGES, r"computes NaN or inf on the calibration data"),  # ORT's calibrator: AssertionError "scale issue"
        (_Nothing, IMAGE, IMAGES, r"returned NoneType with no tensor in it"),  # an ONNX graph without outputs, then an ORT Fail
    ],
)
def test_a_model_and_data_that_do_not_fit_are_named(tmp_path, model, example, data, message):
    import edgesmith

    with pytest.raises(InputError, match=message) as info:
        edgesmith.quantize(model().eval(), calibration=data, example_inputs=example, out_dir=tmp_path / "out")
    assert info.value.exit_code == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("target", ["x86-avx512-vnni-ort", "x86-avx512-vnni-ov"])
def test_the_command_line_says_the_same_in_one_line(cli, tmp_path, target):
    """An ONNX model given token ids past its vocabulary: refused where ONNX Runtime first meets them (here the
    quantizer's calibration, not the parity check of an export), whichever library runs it: ORT's calibrator
    for ONNX Runtime targets, NNCF's statistics (its own session, wrapped in its own code) for OpenVINO ones.
    ORT's own coloured log line of the same failure is not printed beside it."""
    import edgesmith

    edgesmith.export(_Embed().eval(), example_inputs=IDS, out_dir=tmp_path / "exported")
    np.savez(tmp_path / "ids.npz", ids=np.full((20, 5), 99, np.int64))
    r = cli("quantize", tmp_path / "exported" / "model.onnx", "-d", tmp_path / "ids.npz", "--metric", "fidelity", "-t", target, "-o", tmp_path / "out")
    assert r.code == 2 and len(r.error_lines) == 1 and "ONNX Runtime refused the data" in r.stderr, r.stderr[-800:]
    assert "[E:onnxruntime" not in r.stderr and "\x1b[" not in r.stderr, r.stderr[-800:]
    assert not (tmp_path / "out").exists()


def test_a_refusal_wrapped_by_a_library_is_still_named():
    """The class at its root: an ORT InvalidArgument anywhere in the chain of causes (NNCF and INC re-raise
    inside their own code) is the user's data refused; an unrelated error stays what it is."""
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    from edgesmith.errors import data_refusals_named

    refusal = InvalidArgument(
        "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Non-zero status code returned while running Gather node. Name:'emb' Status Message: idx=99"
    )
    with pytest.raises(InputError, match=r"refused the data at node emb: idx=99"):
        with data_refusals_named():
            try:
                raise refusal
            except InvalidArgument as exc:
                raise RuntimeError("statistics collection failed") from exc
    with pytest.raises(RuntimeError, match="unrelated"), data_refusals_named():
        raise RuntimeError("unrelated")
