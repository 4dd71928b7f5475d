"""``nncf_ptq``: static INT8 post-training quantization through NNCF (OpenVINO's compression library).

NNCF quantizes the ONNX model (its ONNX backend) into a QDQ model: OpenVINO runs it with int8
kernels (the artifact's ``int8_from`` says it came from NNCF) and ONNX Runtime can run it too.
Needs the ``openvino`` extra (``pip install 'edgesmith[openvino]'``).

Recipe::

    passes:
      - type: nncf_ptq
        preset: performance          # performance (symmetric) | mixed (asymmetric activations)
        model_type: transformer      # or omit for CNNs
        subset_size: 300
        accuracy_control: true       # NNCF's quantize_with_accuracy_control: layers back to float
        max_drop: 0.5                #   until top-1 drops at most this many points (default: the profile's budget)
        validation: calibration      #   labelled data it validates on: calibration (default) or evaluation

Accuracy control validates on the *calibration* split by default, so the held-out evaluation set the
run reports stays unseen by the search; ``validation: evaluation`` uses the evaluation data instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgesmith._lazy import require
from edgesmith.compress.quantize.onnx_common import float_compute_nodes, note_float_nodes, onnx_input_names
from edgesmith.compress.registry import PassContext, PassInfo
from edgesmith.errors import ConfigError
from edgesmith.model_io import PRODUCER_KEY


@dataclass(frozen=True)
class NNCFPTQConfig:
    preset: Literal["performance", "mixed"] = "performance"
    model_type: Literal["transformer"] | None = None
    subset_size: int = 300
    fast_bias_correction: bool = True
    exclude_nodes: tuple[str, ...] = ()
    exclude_op_types: tuple[str, ...] = ()
    accuracy_control: bool = False
    max_drop: float | None = None  # top-1 points; None: the target profile's top1 max-degradation budget (else 0.5)
    validation: Literal["calibration", "evaluation"] = "calibration"

    def __post_init__(self):
        if self.subset_size < 1:
            raise ValueError(f"subset_size must be >= 1, got {self.subset_size}")
        if self.max_drop is not None and self.max_drop < 0:
            raise ValueError(f"max_drop must be >= 0, got {self.max_drop}")


def apply(onnx_path: Path, cfg: NNCFPTQConfig, ctx: PassContext) -> Path:
    import onnx

    nncf = require("nncf")
    if ctx.calibration is None:
        raise ConfigError("nncf_ptq needs calibration data", hint="add `data: {calibration: {source: digits}}` or --data")
    model = onnx.load(str(onnx_path))
    names = onnx_input_names(onnx_path)
    samples = [{n: b.inputs[n][i : i + 1] for n in names} for b in ctx.calibration.batches for i in range(b.size)]
    subset = min(cfg.subset_size, len(samples))
    ignored = None
    if cfg.exclude_nodes or cfg.exclude_op_types:
        ignored = nncf.IgnoredScope(names=list(cfg.exclude_nodes), types=list(cfg.exclude_op_types), validate=False)
    kwargs = {
        "subset_size": subset,
        "fast_bias_correction": cfg.fast_bias_correction,
        "preset": nncf.QuantizationPreset.PERFORMANCE if cfg.preset == "performance" else nncf.QuantizationPreset.MIXED,
    }
    if cfg.model_type == "transformer":
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if ignored is not None:
        kwargs["ignored_scope"] = ignored
    if cfg.accuracy_control:
        quantized, how = _with_accuracy_control(nncf, model, samples, names, cfg, ctx, kwargs)
    else:
        quantized, how = nncf.quantize(model, nncf.Dataset(samples), **kwargs), ""
    onnx.helper.set_model_props(quantized, {**{p.key: p.value for p in quantized.metadata_props}, PRODUCER_KEY: "nncf_ptq"})
    out = ctx.work_dir / "model.nncf_int8.onnx"
    onnx.save(quantized, str(out))
    left = float_compute_nodes(out, "DequantizeLinear")
    ctx.note(
        f"nncf_ptq: NNCF {nncf.__version__} {cfg.preset} preset{', transformer model type' if cfg.model_type else ''}, "
        f"{subset} calibration samples, fast bias correction {'on' if cfg.fast_bias_correction else 'off'}{how}"
    )
    note_float_nodes(ctx, "nncf_ptq", left)
    ctx.details["nncf_ptq"] = {"preset": cfg.preset, "model_type": cfg.model_type, "subset_size": subset, "float_nodes": left}
    return out


def _with_accuracy_control(nncf, model, samples, names, cfg, ctx, kwargs):
    """NNCF's quantize_with_accuracy_control on the ONNX model, validating top-1 with ONNX Runtime."""
    data = ctx.calibration if cfg.validation == "calibration" else ctx.evaluation
    if data is None or not data.has_labels:
        raise ConfigError(
            f"nncf_ptq accuracy control validates top-1 and needs labels in the {cfg.validation} data", hint="give labelled data, or drop accuracy_control"
        )
    max_drop = cfg.max_drop
    if max_drop is None:
        budgets = [g.value for g in (ctx.profile.budgets if ctx.profile else []) if g.metric == "top1" and g.goal == "max-degradation"]
        max_drop = budgets[0] if budgets else 0.5
    validation = [({n: b.inputs[n] for n in names}, b.labels) for b in data.batches]

    def top1(candidate, items) -> float:
        ort = require("onnxruntime")

        sess = ort.InferenceSession(candidate.SerializeToString(), providers=["CPUExecutionProvider"])
        right = total = 0
        for feeds, labels in items:
            right += int((sess.run(None, feeds)[0].argmax(axis=1) == labels).sum())
            total += len(labels)
        return float(right / max(total, 1))

    quantized = nncf.quantize_with_accuracy_control(
        model, nncf.Dataset(samples), nncf.Dataset(validation), top1, max_drop=max_drop / 100.0, drop_type=nncf.DropType.ABSOLUTE, **kwargs
    )
    before, after = top1(model, validation), top1(quantized, validation)
    ctx.details["nncf_accuracy_control"] = {"max_drop_pt": max_drop, "validation": cfg.validation, "top1_float": before * 100, "top1_int8": after * 100}
    return quantized, (f"; accuracy control on the {cfg.validation} data (max drop {max_drop:g} pt): top-1 {before * 100:.2f} -> {after * 100:.2f}")


PASS = PassInfo(
    name="nncf_ptq",
    stage="onnx",
    config=NNCFPTQConfig,
    apply=apply,
    summary="static INT8 through NNCF (QDQ ONNX; OpenVINO's quantizer), needs the openvino extra",
    precision="int8",
    float_graph=True,
    needs_calibration=True,
)
