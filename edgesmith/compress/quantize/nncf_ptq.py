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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgesmith.compress.registry import PassContext, PassInfo
from edgesmith.errors import ConfigError


@dataclass(frozen=True)
class NNCFPTQConfig:
    preset: Literal["performance", "mixed"] = "performance"
    model_type: Literal["transformer"] | None = None
    subset_size: int = 300
    fast_bias_correction: bool = True
    exclude_nodes: tuple[str, ...] = ()
    exclude_op_types: tuple[str, ...] = ()

    def __post_init__(self):
        if self.subset_size < 1:
            raise ValueError(f"subset_size must be >= 1, got {self.subset_size}")


def apply(onnx_path: Path, cfg: NNCFPTQConfig, ctx: PassContext) -> Path:
    import onnx

    from edgesmith._lazy import require
    from edgesmith.compress.quantize._onnx_common import float_compute_nodes, note_float_nodes, onnx_input_names

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
    kwargs = {"subset_size": subset, "fast_bias_correction": cfg.fast_bias_correction,
              "preset": nncf.QuantizationPreset.PERFORMANCE if cfg.preset == "performance" else nncf.QuantizationPreset.MIXED}
    if cfg.model_type == "transformer":
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if ignored is not None:
        kwargs["ignored_scope"] = ignored
    quantized = nncf.quantize(model, nncf.Dataset(samples), **kwargs)
    quantized.graph.doc_string = "nncf_ptq"
    out = ctx.work_dir / "model.nncf_int8.onnx"
    onnx.save(quantized, str(out))
    left = float_compute_nodes(out, "DequantizeLinear")
    ctx.note(f"nncf_ptq: NNCF {nncf.__version__} {cfg.preset} preset{', transformer model type' if cfg.model_type else ''}, "
             f"{subset} calibration samples, fast bias correction {'on' if cfg.fast_bias_correction else 'off'}")
    note_float_nodes(ctx, "nncf_ptq", left)
    ctx.details["nncf_ptq"] = {"preset": cfg.preset, "model_type": cfg.model_type, "subset_size": subset, "float_nodes": left}
    return out


PASS = PassInfo(
    name="nncf_ptq",
    stage="onnx",
    config=NNCFPTQConfig,
    apply=apply,
    summary="static INT8 through NNCF (QDQ ONNX; OpenVINO's quantizer), needs the openvino extra",
    precision="int8",
    needs_calibration=True,
)
