"""``distill``: train a student model against the model coming into the pass (the teacher).

The student is a factory (``package.module:function``, optionally with ``student_weights``) that takes
the teacher's inputs and gives outputs of the teacher's shape; it replaces the teacher in the rest of
the run (export, ONNX passes, targets), and the teacher stays the float reference every target is
judged against. Training is the shared recovery engine (engine.py) with its loss options: Hinton KD
(``kd``), TopKLD (``topkld``, §6), feature hints with 1×1 adapters (``hint``), MSE on logits, or labels
alone (``ce``: the no-distillation baseline at the same budget).

Recipe::

    passes:
      - type: distill
        student: edgesmith.zoo:digits_cnn_small
        loss: kd            # kd | topkld | hint | mse | ce
        alpha: 0.7
        temperature: 4
        epochs: 20          # or steps: / minutes:
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesmith.compress.distill.engine import RecoverConfig, fit
from edgesmith.compress.registry import PassInfo
from edgesmith.model_io import load_model
from edgesmith.schema import ModelSpec


@dataclass(frozen=True)
class DistillConfig(RecoverConfig):
    student: str = ""
    student_weights: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.student or ":" not in self.student:
            raise ValueError(f"student must be a package.module:factory, got {self.student!r}")


def apply(model: Any, cfg: DistillConfig, ctx: Any) -> Any:

    spec = ModelSpec.model_validate({"source": cfg.student, **({"weights": cfg.student_weights} if cfg.student_weights else {})})
    student = load_model(spec, Path.cwd()).module
    teacher_params = sum(p.numel() for p in model.parameters())
    student_params = sum(p.numel() for p in student.parameters())
    result = fit(student, model, ctx.calibration, [s.name for s in ctx.input_specs], cfg, label=f"distill ({cfg.loss})")
    ctx.details["distill"] = {
        "student": cfg.student,
        "loss": cfg.loss,
        "teacher_params": teacher_params,
        "student_params": student_params,
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "best_metric": result.best_metric,
        "metric": result.metric_name,
        "stopped": result.stopped,
        "history": result.history,
    }
    ctx.note(
        f"distill: {cfg.student} ({student_params / 1e3:.1f} k parameters, {teacher_params / max(student_params, 1):.1f}x smaller "
        f"than the teacher) trained with {cfg.loss}: {result.summary()}"
    )
    return student


PASS = PassInfo(
    "distill",
    "torch",
    DistillConfig,
    apply,
    "train a student against the incoming model (KD, TopKLD, feature hints, MSE, or labels alone), best checkpoint kept",
    needs_calibration=True,
)
