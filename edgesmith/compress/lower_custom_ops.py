"""``lower_custom_ops``: replace custom-domain ops with their standard-op lowering (for runtimes that
have no registration for them; see ``edgesmith.runtime.custom_ops``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesmith.compress.registry import PassInfo
from edgesmith.runtime.custom_ops import lower_model


@dataclass(frozen=True)
class LowerCustomOpsConfig:
    domains: tuple[str, ...] = ()  # only these domains (default: every custom domain in the model)


def lower_custom_ops(onnx_path: Path, cfg: LowerCustomOpsConfig, ctx: Any) -> Path:
    import onnx

    model, lowered = lower_model(onnx.load(str(onnx_path)), set(cfg.domains) or None)
    out = ctx.work_dir / "model.lowered.onnx"
    onnx.save(model, str(out))
    ctx.note(f"lower_custom_ops: {', '.join(lowered) or 'no custom ops'} lowered to standard ONNX ops")
    ctx.details["lower_custom_ops"] = {"lowered": lowered}
    return out


PASS = PassInfo(
    "lower_custom_ops",
    "onnx",
    LowerCustomOpsConfig,
    lower_custom_ops,
    "replace custom-domain ops (e.g. edgesmith.BinarySign) with equivalent standard ONNX ops",
    custom_ops=("*",),
)
