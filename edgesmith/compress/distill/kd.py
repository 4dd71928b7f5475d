"""Hinton knowledge distillation: KL between temperature-softened teacher and student distributions.

    L = (1 − α)·CE(z_s, y) + α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))

The T² keeps the soft term's gradient scale independent of T (Hinton et al., 2015). Without labels
(α = 1) it is pure distillation.
"""

from __future__ import annotations

from typing import Any


def kd_kl(student_logits: Any, teacher_logits: Any, temperature: float = 4.0) -> Any:
    """T²·KL(p_t ‖ p_s) with p = softmax(z/T), averaged over the batch (and any spatial positions)."""
    import torch.nn.functional as F

    T = temperature
    s = F.log_softmax(student_logits / T, dim=1)
    t = F.log_softmax(teacher_logits / T, dim=1)
    per_item = (t.exp() * (t - s)).sum(dim=1)
    return per_item.mean() * T * T


def hinton_loss(student_logits: Any, teacher_logits: Any, labels: Any | None, alpha: float = 0.5, temperature: float = 4.0) -> Any:
    """(1 − α)·cross-entropy with the labels + α·T²·KL to the teacher (α = 1: no labels needed)."""
    import torch.nn.functional as F

    soft = kd_kl(student_logits, teacher_logits, temperature)
    if alpha >= 1.0:
        return soft
    if labels is None:
        raise ValueError("the task term (alpha < 1) needs labels")
    return (1.0 - alpha) * F.cross_entropy(student_logits, labels) + alpha * soft
