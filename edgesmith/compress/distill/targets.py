"""What the recovery engine distils toward, by the kind of output the original model gives — so every
training pass recovers from the original model alone, on unlabelled data, whatever the model answers:

- ``classes``: [N, C] class scores → Hinton KD (temperature-softened KL), plus cross-entropy when the data
  has class labels [N]; held out: share of decisions kept (or top-1 against the labels).
- ``sequence``: [N, T, C] per-position scores (CTC text recognizers, token logits) → KL per position over
  the classes, plus CTC loss when the data has sequence labels [N, L] (0-padded, 0 = blank); held out:
  share of samples whose decoded sequence (arg-max, repeats merged, class 0 dropped) is the original's.
- ``dense``: anything else (heat maps, boxes, embeddings, [N, H, W, 2] detector maps) → mean squared error
  over the original's variance; held out: R² against the original, in percent.

Labels of the wrong kind for the output (class labels for a sequence, sequences for classes) are refused
with the shapes; a label the loss cannot use is never silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgesmith.compress.distill.kd import kd_kl
from edgesmith.errors import InputError
from edgesmith.metrics import edit_distance, is_decision_output

Task = Literal["classes", "sequence", "dense"]


def output_task(teacher_out: Any) -> Task:
    """The kind of the original model's output (a probe batch of it)."""
    if teacher_out.dim() == 2 and is_decision_output(teacher_out.detach().float().numpy()):
        return "classes"
    if teacher_out.dim() == 3 and teacher_out.shape[-1] >= 2:
        return "sequence"
    return "dense"


def check_labels(task: Task, labels: Any, out_shape: tuple) -> None:
    """Labels must fit the output: [N] class indices for classes, [N, L] index sequences for a sequence output."""
    if labels is None:
        return
    want = {"classes": 1, "sequence": 2}.get(task)
    if want is None:
        raise InputError(
            f"the model's output {list(out_shape)} is not class or sequence scores, and the data has labels {list(labels.shape)}",
            hint="recovery of this output distils from the original model alone: give the data without labels, or alpha: 1",
        )
    if labels.dim() != want:
        kind = "class indices [N]" if want == 1 else "index sequences [N, L] (0-padded)"
        raise InputError(
            f"labels {list(labels.shape)} do not fit the model's {task} output {list(out_shape)}: it needs {kind}",
            hint="give labels of that kind, or leave them out to distil from the original model alone",
        )
    if int(labels.min()) < 0 or int(labels.max()) >= out_shape[-1]:
        raise InputError(
            f"labels range over [{int(labels.min())}, {int(labels.max())}], and the output has {out_shape[-1]} classes",
            hint="labels are class indices below the number of output classes",
        )


def soft_loss(task: Task, s: Any, t: Any, temperature: float) -> Any:
    """The distillation term toward the original model's outputs ``t``."""
    import torch.nn.functional as F

    if task == "classes":
        return kd_kl(s, t, temperature)
    if task == "sequence":
        return kd_kl(s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1]), temperature)
    return F.mse_loss(s, t) / t.detach().var().clamp_min(1e-8)


def label_loss(task: Task, s: Any, labels: Any) -> Any:
    """The task term with the data's labels: cross-entropy for classes, CTC for sequences."""
    import torch
    import torch.nn.functional as F

    if task == "classes":
        return F.cross_entropy(s, labels)
    logp = F.log_softmax(s, dim=-1).transpose(0, 1)  # [T, N, C]
    lengths = (labels > 0).sum(1)
    flat = labels[labels > 0]
    frames = torch.full((s.shape[0],), s.shape[1], dtype=torch.long)
    return F.ctc_loss(logp, flat, frames, lengths, blank=0, zero_infinity=True)


def collapse(best: np.ndarray) -> list[tuple[int, ...]]:
    """Greedy CTC decode of [N, T] arg-max indices: repeats merged, class 0 (the blank) dropped."""
    out = []
    for row in best:
        keep = np.concatenate([[True], row[1:] != row[:-1]]) & (row > 0)
        out.append(tuple(row[keep].tolist()))
    return out


@dataclass(frozen=True)
class HeldOut:
    """How a held-out slice is scored: name, and a function (student outputs, teacher outputs, labels) -> (score, tie-break loss)."""

    task: Task
    labelled: bool

    @property
    def name(self) -> str:
        if self.labelled:
            return "top1" if self.task == "classes" else "character accuracy"
        return {"classes": "decisions kept", "sequence": "characters kept", "dense": "R2 vs original"}[self.task]

    def score(self, out: Any, t_out: Any, labels: Any) -> tuple[float, float]:
        tie = float(soft_loss(self.task, out, t_out, 1.0))
        if self.task == "dense":
            err = float(((out - t_out) ** 2).mean()) / max(float(t_out.var()), 1e-12)
            return 100.0 * (1.0 - min(err, 1.0)), tie
        if self.task == "classes":
            target = labels if self.labelled else t_out.argmax(1)
            return float((out.argmax(1) == target).float().mean()) * 100, tie
        mine = collapse(out.argmax(-1).numpy())
        if self.labelled:
            ref = [tuple(int(v) for v in row if v > 0) for row in labels.numpy()]
        else:
            ref = collapse(t_out.argmax(-1).numpy())
        # NOTE: per character (100 - CER against the reference), not per whole line: a line is kept or lost on one
        # character, which left the best checkpoint of the pruned recognizer at noise (75-78% of lines, flat)
        errors = sum(edit_distance(a, b) for a, b in zip(mine, ref))
        return 100.0 * (1.0 - min(1.0, errors / max(1, sum(len(b) for b in ref)))), tie
