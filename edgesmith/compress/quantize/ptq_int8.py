"""``ptq_int8``: static post-training INT8 quantization to a QDQ ONNX model (ONNX Runtime quantizer).

Activation/weight types, per-channel and reduce-range default to what the target profile says is
fastest on that hardware (``profile.quantization``): on x86 with AVX-512 VNNI, uint8 activations
with int8 per-channel weights ran 2.9x FP32 on ResNet-18 where ORT's own default (int8
activations) ran 0.86x. LSTMs, which ORT's static quantizer leaves float, get dynamic INT8 (int8
weights, activations quantized at run time: ORT's DynamicQuantizeLSTM) on ONNX Runtime CPU targets.

Recipe::

    passes:
      - type: ptq_int8
        calibration: entropy        # minmax | percentile | entropy
        samples: 256
        exclude_nodes: [/fc/Gemm]
        recurrent: auto             # auto | dynamic | float: LSTMs as dynamic INT8 (auto: on ORT CPU targets)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgesmith.compress.contract import CalibrationCache, WeightGrids
from edgesmith.compress.quantize._snap import snap_weights
from edgesmith.compress.quantize.entropy import entropy_ranges, write_cache
from edgesmith.compress.quantize.onnx_common import DatasetReader, float_compute_nodes, note_float_nodes, onnx_input_names, preprocess
from edgesmith.compress.registry import PassContext, PassInfo
from edgesmith.errors import ConfigError, InputError, data_refusals_named
from edgesmith.model_io import PRODUCER_KEY
from edgesmith.outputs import sha256


@dataclass(frozen=True)
class PTQInt8Config:
    calibration: Literal["minmax", "percentile", "entropy"] = "minmax"
    samples: int | None = None  # None: all the calibration data the recipe provides
    percentile: float = 99.999
    activation_type: Literal["uint8", "int8"] | None = None  # None: from the target profile
    weight_type: Literal["int8", "uint8"] | None = None
    per_channel: bool | None = None
    reduce_range: bool | None = None
    symmetric_activations: bool = False
    op_types: tuple[str, ...] = ()  # empty: every op type ORT can quantize
    exclude_nodes: tuple[str, ...] = ()
    exclude_op_types: tuple[str, ...] = ()
    # LSTMs, which ORT's static (QDQ) quantizer leaves float: "dynamic" gives them int8 weights with activations
    # quantized at run time (ORT's DynamicQuantizeLSTM); "auto" does so on ONNX Runtime CPU targets (a com.microsoft
    # op: OpenVINO and TensorRT cannot read it), "float" never
    recurrent: Literal["auto", "dynamic", "float"] = "auto"

    def __post_init__(self):
        if self.samples is not None and self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if not 90.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (90, 100], got {self.percentile}")


def resolve(cfg: PTQInt8Config, ctx: PassContext) -> dict:
    """The settings actually used: recipe values where given, else the target profile's."""
    q = ctx.profile.quantization if ctx.profile is not None else None
    pick = lambda value, attr, fallback: value if value is not None else (getattr(q, attr) if q else fallback)  # noqa: E731
    return {
        "activation_type": pick(cfg.activation_type, "activation_type", "uint8"),
        "weight_type": pick(cfg.weight_type, "weight_type", "int8"),
        "per_channel": pick(cfg.per_channel, "per_channel", True),
        "reduce_range": pick(cfg.reduce_range, "reduce_range", False),
        "symmetric_activations": cfg.symmetric_activations or bool(q and q.symmetric_activations),
    }


def _check_for_tensorrt(chosen: dict, ctx: PassContext) -> None:
    """TensorRT's explicit quantization takes signed int8, zero point 0, for activations and weights."""
    if ctx.profile is None or ctx.profile.backend != "tensorrt":
        return
    if chosen["activation_type"] != "int8" or chosen["weight_type"] != "int8" or not chosen["symmetric_activations"]:
        raise ConfigError(
            f"target {ctx.profile.name} runs TensorRT, whose explicit quantization takes signed int8 with zero point 0; "
            f"this pass asks for {chosen['activation_type']} activations (symmetric: {chosen['symmetric_activations']}), "
            f"{chosen['weight_type']} weights",
            hint="drop activation_type/weight_type/symmetric_activations from the pass (the profile sets them)",
        )


def apply(onnx_path: Path, cfg: PTQInt8Config, ctx: PassContext) -> Path:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import create_calibrator

    if ctx.calibration is None:
        raise ConfigError("ptq_int8 needs calibration data", hint="add `data: {calibration: {source: digits}}` or --data")
    chosen = resolve(cfg, ctx)
    _check_for_tensorrt(chosen, ctx)
    _check_recurrent(cfg, ctx)
    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}
    extra = {"ActivationSymmetric": chosen["symmetric_activations"], "WeightSymmetric": True}
    if ctx.profile is not None and ctx.profile.backend == "tensorrt":
        extra["QuantizeBias"] = False  # NOTE: TensorRT takes float biases beside int8 Q/DQ weights, not int32 DequantizeLinear
    if cfg.calibration == "percentile":
        extra["CalibPercentile"] = cfg.percentile

    pre = preprocess(onnx_path, ctx.work_dir / "ptq_int8.pre.onnx", ctx)
    out = ctx.work_dir / "model.int8.onnx"
    graph = onnx.load(str(pre), load_external_data=False).graph  # the structure only: names, op types, outputs
    exclude = list(cfg.exclude_nodes) + [n.name for n in graph.node if n.op_type in cfg.exclude_op_types]
    n_samples = min(cfg.samples or ctx.calibration.num_samples, ctx.calibration.num_samples)
    calib = ctx.calibration.take(n_samples)
    if cfg.calibration == "percentile":
        # NOTE: ORT's histogram calibrators stack per-batch outputs and need equal batch sizes
        calib, dropped = calib.uniform_batches()
        if dropped:
            ctx.note(f"ptq_int8: {cfg.calibration} calibration needs equal batch sizes; left out the last {dropped} sample(s)")
        n_samples = calib.num_samples
    reader = DatasetReader(calib, onnx_input_names(pre), n_samples)
    cache = _calibration_cache(ctx, pre, cfg, n_samples)
    if cfg.calibration == "entropy":  # NOTE: edgesmith's streamed KL calibration (entropy.py), handed to ORT as its cache
        cache = cache or ctx.work_dir / "ptq_int8.entropy-ranges.json"
        if not cache.is_file():
            calibrator = create_calibrator(
                str(pre), list(cfg.op_types) or None, str(ctx.work_dir / "ptq_int8.entropy.augmented.onnx"), calibrate_method=CalibrationMethod.Entropy
            )
            outputs = frozenset(o.name for o in graph.output)
            ranges = entropy_ranges(calibrator, lambda: DatasetReader(calib, onnx_input_names(pre), n_samples), outputs)
            del calibrator
            write_cache(ranges, cache)
    with _calibration_errors_named():
        quantize_static(
            str(pre),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(cfg.op_types) or None,
            per_channel=chosen["per_channel"],
            reduce_range=chosen["reduce_range"],
            activation_type=qtype[chosen["activation_type"]],
            weight_type=qtype[chosen["weight_type"]],
            nodes_to_exclude=exclude,
            calibrate_method=method[cfg.calibration],
            extra_options=extra,
            **({"calibration_cache_path": str(cache)} if cache else {}),
        )
    grids = ctx.records.get(WeightGrids)
    if grids is not None:
        ctx.details["weight_grids"] = snap_weights(out, pre, {k: dict(v) for k, v in grids.entries.items()}, ctx)
    out = _recurrent_int8(out, cfg, chosen, ctx)
    _mark_producer(out, "ptq_int8")
    if cfg.exclude_op_types:
        ctx.note(f"op types excluded by the recipe: {', '.join(cfg.exclude_op_types)}")
    source = (
        "recipe"
        if any(getattr(cfg, k) is not None for k in ("activation_type", "weight_type", "per_channel", "reduce_range"))
        else f"profile {ctx.profile.name}"
        if ctx.profile
        else "defaults"
    )
    ctx.note(
        f"ptq_int8: {cfg.calibration} calibration on {n_samples} samples; "
        f"activations {chosen['activation_type']}, weights {chosen['weight_type']}"
        f"{' per-channel' if chosen['per_channel'] else ' per-tensor'}, reduce_range={chosen['reduce_range']} (from {source})"
    )
    left = float_compute_nodes(out, "DequantizeLinear")
    note_float_nodes(ctx, "ptq_int8", left)
    ctx.details["ptq_int8"] = {**chosen, "calibration": cfg.calibration, "float_nodes": left}
    return out


def _on_ort_cpu(ctx: PassContext) -> bool:
    return ctx.profile is None or (ctx.profile.backend == "onnxruntime" and ctx.profile.device == "cpu")


def _check_recurrent(cfg: PTQInt8Config, ctx: PassContext) -> None:
    """``recurrent: dynamic`` on a target that cannot run ORT's com.microsoft op, refused before any work."""
    if cfg.recurrent == "dynamic" and not _on_ort_cpu(ctx):
        assert ctx.profile is not None
        raise ConfigError(
            f"ptq_int8: recurrent: dynamic makes ONNX Runtime's DynamicQuantizeLSTM (a com.microsoft op), which target "
            f"{ctx.profile.name} ({ctx.profile.backend} on {ctx.profile.device}) cannot run",
            hint="leave recurrent: auto (LSTMs stay float on this target) or use an ONNX Runtime CPU profile",
        )


def _recurrent_int8(out: Path, cfg: PTQInt8Config, chosen: dict, ctx: PassContext) -> Path:
    """The LSTMs the static quantizer left float, as ORT's DynamicQuantizeLSTM: on EasyOCR's recognizer the two
    bidirectional LSTMs kept static INT8 at 1.32x over FP32 (8.4 of its 10.1 MB); with them 2.32x, 3.9 MB, CER the same."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if cfg.recurrent == "float" or (cfg.recurrent == "auto" and not _on_ort_cpu(ctx)):
        return out
    graph = onnx.load(str(out), load_external_data=False).graph
    lstms = [n.name for n in graph.node if n.op_type == "LSTM" and n.name not in cfg.exclude_nodes]
    if not lstms or "LSTM" in cfg.exclude_op_types or (cfg.op_types and "LSTM" not in cfg.op_types):
        return out
    mixed = out.with_name("model.int8.dynamic-lstm.onnx")
    logging.disable(logging.WARNING)  # NOTE: ORT warns that the model "is already quantized": by design, its other ops are
    try:
        quantize_dynamic(
            str(out),
            str(mixed),
            op_types_to_quantize=["LSTM"],
            nodes_to_exclude=[n.name for n in graph.node if n.name not in lstms],
            per_channel=chosen["per_channel"],
            weight_type=QuantType.QInt8,
        )
    finally:
        logging.disable(logging.NOTSET)
    ctx.note(f"ptq_int8: {len(lstms)} LSTM(s) dynamic INT8 (int8 weights, activations quantized at run time; recurrent: {cfg.recurrent})")
    ctx.details["ptq_int8_recurrent"] = {"dynamic": lstms}
    return mixed


def _calibration_cache(ctx: PassContext, pre: Path, cfg: PTQInt8Config, n_samples: int) -> Path | None:
    """Where ONNX Runtime keeps the activation ranges of one calibration, when a caller that quantizes
    the same model several times (``edgesmith optimize``) asks for it with a ``CalibrationCache`` record: candidates
    that differ only in types, granularity or excluded nodes then calibrate once."""
    record = ctx.records.get(CalibrationCache)
    if record is None:
        return None
    folder = record.folder

    def path(op_types: list[str]) -> Path:
        symmetric = resolve(cfg, ctx)["symmetric_activations"]
        key = json.dumps([sha256(pre), cfg.calibration, cfg.percentile, n_samples, op_types, symmetric])
        return Path(folder) / f"ranges-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"

    every_op = path([])  # ranges of every quantizable op's tensors: a superset for any op_types subset
    return every_op if (not cfg.op_types or every_op.is_file()) else path(sorted(cfg.op_types))


def _mark_producer(path: Path, name: str) -> None:
    """Record which pass made this QDQ model (backends report where INT8 came from)."""
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, PRODUCER_KEY: name})
    onnx.save(model, str(path))


PASS = PassInfo(
    name="ptq_int8",
    stage="onnx",
    config=PTQInt8Config,
    apply=apply,
    summary="static INT8 post-training quantization to QDQ ONNX (ORT quantizer), target-aware defaults",
    precision="int8",
    float_graph=True,
    needs_calibration=True,
    consumes=(WeightGrids, CalibrationCache),
)


@contextlib.contextmanager
def _calibration_errors_named() -> Iterator[None]:
    """ORT's calibrator on the user's model and data: data the graph refuses, and activations that are NaN or inf
    (ORT asserts "scale issue"), are the user's to fix, said as such (they were exit 3)."""
    try:
        with data_refusals_named():
            yield
    except AssertionError as exc:
        raise InputError(
            f"calibration found no finite range for an activation ({exc}): the float model computes NaN or inf on the calibration data",
            hint="run the float model on that data: check its inputs' scale and preprocessing, and the weights",
        ) from exc
