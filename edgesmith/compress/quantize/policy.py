"""Which settings are worth trying, per model structure and target runtime — and why.

Every rule below comes from a measurement on this kind of CPU (x86 with AVX-512 VNNI, 2 cores; see
BENCHMARKS.md "optimize"), where each established tool's *default* failed on some model:

- CNNs on ONNX Runtime: uint8 activations with int8 per-channel weights (U8S8) is VNNI's fast path;
  ORT's own default (int8 activations) ran slower than FP32. Per-channel weights matter most for
  depthwise convolutions (one scale per 3x3 filter).
- PReLU: ONNX Runtime has no integer PReLU, so each one sits between a DequantizeLinear and a
  QuantizeLinear and INT8 did not pay at batch 1; OpenVINO fuses PReLU into its int8 convolutions.
- Transformers (softmax attention, LayerNorm, GELU, integer token inputs): static int8 activations
  over softmax/LayerNorm outputs wreck fidelity (cosine 0.34 for ORT's static default on a sentence
  encoder). Dynamic per-channel quantization of MatMul weights only keeps it (0.993); NNCF's
  transformer model type keeps softmax/LayerNorm in float and smooths activation outliers into the
  weights (SmoothQuant) before quantizing, and ran fastest on OpenVINO.
- Token inputs (int64) feed Gather (embeddings): never quantized here; the embedding tables stay float.

FP32 on each runtime is always a candidate, so the search can say "nothing beat FP32" and keep it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Plan:
    name: str
    runtime: str  # onnxruntime | openvino
    pass_type: str | None  # None: the float model as it is
    options: dict[str, Any] = field(default_factory=dict)
    why: str = ""

    @property
    def quant_key(self) -> str:
        """Candidates that share a quantized model (the same pass and options) quantize it once."""

        return f"{self.pass_type}:{json.dumps(self.options, sort_keys=True)}"


def plan(structure: Any, target_runtime: str, runtimes: list[str]) -> list[Plan]:
    """Candidates for a model of this structure, the target's runtime first, then other runtimes on the same device."""
    plans: list[Plan] = []
    for runtime in [target_runtime] + [r for r in runtimes if r != target_runtime]:
        plans += [Plan(f"fp32 ({_short(runtime)})", runtime, None, {}, "the float model: the reference every candidate must beat")]
        plans += _ort(structure) if runtime == "onnxruntime" else _openvino(structure)
    return plans


def _short(runtime: str) -> str:
    return {"onnxruntime": "ORT", "openvino": "OpenVINO"}.get(runtime, runtime)


def _ort(s: Any) -> list[Plan]:
    r = "onnxruntime"
    if s.transformer:
        out = [
            Plan(
                "ORT dynamic, MatMul weights per-channel",
                r,
                "dynamic_int8",
                {"op_types": ["MatMul"], "per_channel": True},
                "transformer: int8 weights with activations quantized per call keep softmax/LayerNorm outputs exact; "
                "MatMul only, so embeddings (Gather over int64 tokens) stay float",
            ),
            Plan(
                "NNCF transformer (SmoothQuant) QDQ on ORT",
                r,
                "nncf_ptq",
                {"model_type": "transformer"},
                "transformer: NNCF's transformer type keeps softmax/LayerNorm float and smooths activation outliers into the weights",
            ),
            Plan(
                "ORT static U8S8, linear layers only",
                r,
                "ptq_int8",
                {"op_types": ["MatMul", "Gemm"], "per_channel": True},
                "transformer: static int8 on the linear layers alone (tried to show whether calibrated activations hold up)",
            ),
        ]
        return out
    out = [
        Plan(
            "ORT static U8S8 per-channel",
            r,
            "ptq_int8",
            {"per_channel": True, "activation_type": "uint8"},
            "convolutions: uint8 activations and int8 per-channel weights run on VNNI's fast path (ORT's own int8-activation default ran slower than FP32 here)",
        )
    ]
    if s.depthwise:
        out.append(
            Plan(
                "ORT static U8S8 per-channel, entropy calibration",
                r,
                "ptq_int8",
                {"per_channel": True, "activation_type": "uint8", "calibration": "entropy"},
                f"{s.depthwise} depthwise convolutions: their activations have heavy tails; entropy calibration clips them",
            )
        )
    if s.prelu or s.matmuls > 1:
        out.append(
            Plan(
                "ORT static U8S8, convolutions only",
                r,
                "ptq_int8",
                {"per_channel": True, "activation_type": "uint8", "op_types": ["Conv"]},
                ("PReLU has no integer kernel in ORT; " if s.prelu else "") + "linear heads kept float: fewer Q/DQ around ops that cannot run in int8",
            )
        )
    return out


def _openvino(s: Any) -> list[Plan]:
    r = "openvino"
    if s.transformer:
        return [
            Plan(
                "NNCF transformer (SmoothQuant) on OpenVINO",
                r,
                "nncf_ptq",
                {"model_type": "transformer"},
                "transformer on OpenVINO: NNCF's transformer type (float softmax/LayerNorm, SmoothQuant), int8 MatMuls with VNNI",
            )
        ]
    out = [
        Plan(
            "NNCF performance preset on OpenVINO",
            r,
            "nncf_ptq",
            {"preset": "performance"},
            "convolutions on OpenVINO: symmetric int8 everywhere, fused" + (" PReLU" if s.prelu else "") + " into int8 kernels",
        )
    ]
    if s.depthwise or s.prelu:
        out.append(
            Plan(
                "NNCF performance preset, full bias correction, on OpenVINO",
                r,
                "nncf_ptq",
                {"preset": "performance", "fast_bias_correction": False},
                ("PReLU" if s.prelu else "depthwise convolutions") + ": quantization error shifts the layer means; NNCF's full "
                "bias correction (layer by layer on the calibration data) repaired it where the fast one did not "
                "(PReLU CNN: cosine 0.963 -> 0.998)",
            )
        )
    if s.depthwise:
        out.append(
            Plan(
                "NNCF mixed preset on OpenVINO",
                r,
                "nncf_ptq",
                {"preset": "mixed"},
                "asymmetric activations: ReLU6 ranges of depthwise blocks would waste half of a symmetric int8 range",
            )
        )
    return out
