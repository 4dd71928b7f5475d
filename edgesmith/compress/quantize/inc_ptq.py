"""``inc_ptq``: static INT8 through Intel Neural Compressor's PyTorch API (INC 3.x, PT2E path).

The model is captured with ``neural_compressor.torch.export.export`` (torch.export, dynamic batch),
prepared with INC's default static INT8 configuration (x86 quantizer: per-channel symmetric int8
weights, uint8 activations), calibrated on the recipe's calibration data, and converted; the pipeline
then exports the converted program to ONNX, where its quantize/dequantize pairs become ONNX
QuantizeLinear/DequantizeLinear and ONNX Runtime fuses convolutions into QLinearConv.
Needs ``pip install 'edgesmith[inc]'`` (neural-compressor-pt, which brings torchao).

What INC cannot do on this stack (measured with INC 3.10, torch 2.13 CPU): its IPEX path needs
intel-extension-for-pytorch, which has no build for this torch, so only the PT2E path is used; with
INC's default x86 configuration the linear layer's weights reach ONNX Runtime as a float Gemm (ORT does
not fuse that QDQ pattern), so classifier heads stay float (the report lists them).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from edgesmith._lazy import require
from edgesmith.compress.layers import calibration_batches, forward_batch
from edgesmith.compress.registry import PassInfo
from edgesmith.errors import ConfigError


@dataclass(frozen=True)
class INCPTQConfig:
    samples: int = 256

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")


def inc_ptq(model: Any, cfg: INCPTQConfig, ctx: Any) -> Any:

    import torch

    require("neural_compressor.torch.quantization")
    from neural_compressor.torch.export import export
    from neural_compressor.torch.quantization import convert, get_default_static_config, prepare

    if ctx.calibration is None:
        raise ConfigError("inc_ptq needs calibration data", hint="add `data: {calibration: {source: digits}}`")
    names = [s.name for s in ctx.input_specs]
    first = next(iter(ctx.calibration.batches))
    example = tuple(torch.from_numpy(first.inputs[n]) for n in names)
    dims = tuple({0: torch.export.Dim("batch")} for _ in names)

    inc_logger = logging.getLogger("neural_compressor")
    level = inc_logger.level
    inc_logger.setLevel(logging.WARNING)  # NOTE: INC logs every rewrite at INFO on stdout
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        captured = export(model.eval(), example, dynamic_shapes=dims)
        prepared = prepare(captured, get_default_static_config())
        with torch.no_grad():
            for batch in calibration_batches(ctx, cfg.samples):
                forward_batch(prepared, batch, names)
        converted = convert(prepared)
    inc_logger.setLevel(level)

    version = _version(metadata, "neural-compressor-pt") or _version(metadata, "neural-compressor") or "?"
    n = min(cfg.samples, ctx.calibration.num_samples)
    ctx.note(f"inc_ptq: Intel Neural Compressor {version} default static INT8 (PT2E, x86 quantizer), calibrated on {n} samples")
    ctx.details["inc_ptq"] = {"version": version, "samples": n, "path": "pt2e"}
    return converted


def _version(metadata, dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


PASS = PassInfo(
    "inc_ptq", "torch", INCPTQConfig, inc_ptq, "static INT8 through Intel Neural Compressor's PyTorch API (PT2E)", precision="int8", needs_calibration=True
)
