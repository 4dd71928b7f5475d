"""``auto_int8``: INT8 the way ``edgesmith optimize`` would first try it for this model on this target.

Reads the model's structure from its ONNX graph (transformer blocks, depthwise convolutions, PReLU,
integer token inputs) and applies the first candidate the structure policy (``policy.py``) gives for
the target's runtime — e.g. MatMul-only dynamic INT8 for a transformer on ONNX Runtime (static int8
everywhere wrecked a BERT-style encoder's output: cosine 0.34), static U8S8 per-channel for a CNN, NNCF's
transformer type on OpenVINO — and says which and why in the report. It measures nothing: ``optimize``
tries every candidate and keeps the fastest within budget. This is the default of ``edgesmith quantize``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from edgesmith.compress.quantize.policy import plan
from edgesmith.compress.quantize.structure import analyse
from edgesmith.compress.registry import PassContext, PassInfo, build_pass_config, get_pass
from edgesmith.errors import ConfigError


@dataclass(frozen=True)
class AutoInt8Config:
    samples: int | None = None  # calibration samples for static candidates (None: all)

    def __post_init__(self) -> None:
        if self.samples is not None and self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")


def auto_int8(onnx_path: Path, cfg: AutoInt8Config, ctx: PassContext) -> Path:

    runtime = ctx.profile.backend if ctx.profile is not None else "onnxruntime"
    structure = analyse(onnx_path)
    candidates = [p for p in plan(structure, runtime, [runtime]) if p.pass_type is not None]
    if not candidates:
        raise ConfigError(f"auto_int8 has no INT8 recipe for {runtime}", hint="pick a pass yourself (ptq_int8, dynamic_int8, nncf_ptq)")
    chosen = candidates[0]
    assert chosen.pass_type is not None  # the INT8 plans all name a pass
    options = dict(chosen.options)
    if cfg.samples is not None and "samples" in {f.name for f in dataclasses.fields(get_pass(chosen.pass_type).config)}:
        options["samples"] = cfg.samples
    ctx.note(f"auto_int8: {structure.describe()} -> {chosen.name} ({chosen.pass_type} {options}): {chosen.why}")
    ctx.details["auto_int8"] = {"structure": structure.kinds, "chosen": chosen.name, "pass": chosen.pass_type, "options": options, "why": chosen.why}
    return get_pass(chosen.pass_type).apply(onnx_path, build_pass_config(chosen.pass_type, options), ctx)


PASS = PassInfo(
    "auto_int8",
    "onnx",
    AutoInt8Config,
    auto_int8,
    "INT8 chosen from the model's structure for the target's runtime (what optimize tries first), with the reason",
    precision="int8",
    float_graph=True,
    needs_calibration=True,
)
