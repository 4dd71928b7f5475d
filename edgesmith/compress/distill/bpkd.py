"""BPKD — boundary-privileged knowledge distillation for semantic segmentation (docs/algorithms.md §7).

The authors' repository ships evaluation only; these losses follow the two public reimplementations
summarised in docs/algorithms.md:

1. edge mask per class: M_E = dilate(onehot(GT)) − erode(onehot(GT)) with a 7×7 kernel, average-pooled
   to the logits' size (so M_E ∈ [0, 1]);
2. edge loss: per pixel T²·KL(softmax(Z_T⊙M_E / T) ‖ softmax(Z_S⊙M_E / T)) over classes, weighted by
   M_E of each class and normalised by that class's edge mass, times α_c = 2, averaged over the classes
   present at an edge;
3. body loss: Z⊙(1 − M_E) with a softmax over spatial positions per channel, (T²/C)·Σ_c KL(teacher_c ‖ student_c);
4. total: CE + 20·L_body + 50·L_edge.
"""

from __future__ import annotations

from typing import Any

EDGE_WEIGHT, BODY_WEIGHT, ALPHA_C = 50.0, 20.0, 2.0


def edge_mask(labels: Any, num_classes: int, size: tuple[int, int] | None = None, kernel: int = 7) -> Any:
    """[N, H, W] integer labels -> [N, C, h, w] edge mask in [0, 1] (h, w: ``size``, default H, W)."""
    import torch.nn.functional as F

    onehot = F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).float()
    pad = kernel // 2
    dilated = F.max_pool2d(onehot, kernel, 1, pad)
    eroded = -F.max_pool2d(-onehot, kernel, 1, pad)  # padding is -inf for max_pool: borders do not erode
    edge = dilated - eroded
    if size is not None and tuple(size) != tuple(edge.shape[-2:]):
        edge = F.adaptive_avg_pool2d(edge, size)
    return edge.clamp(0.0, 1.0)


def edge_loss(zs: Any, zt: Any, mask: Any, temperature: float = 1.0) -> Any:
    import torch

    T = temperature
    ls = torch.log_softmax(zs * mask / T, 1)
    lt = torch.log_softmax(zt * mask / T, 1)
    kl = (lt.exp() * (lt - ls)).sum(1, keepdim=True)  # [N, 1, h, w]
    mass = mask.sum((0, 2, 3))  # per class
    present = mass > 0
    if not bool(present.any()):
        return zs.sum() * 0.0
    per_class = (kl * mask).sum((0, 2, 3))[present] / mass[present]
    return ALPHA_C * per_class.mean() * T * T


def body_loss(zs: Any, zt: Any, mask: Any, temperature: float = 1.0) -> Any:
    import torch

    T = temperature
    n, c = zs.shape[:2]
    body = 1.0 - mask
    ls = torch.log_softmax((zs * body).reshape(n, c, -1) / T, 2)
    lt = torch.log_softmax((zt * body).reshape(n, c, -1) / T, 2)
    kl = (lt.exp() * (lt - ls)).sum(2)  # [N, C]
    return kl.sum(1).mean() * T * T / c


def bpkd_loss(student_logits: Any, teacher_logits: Any, labels: Any, temperature: float = 1.0, with_ce: bool = True) -> dict[str, Any]:
    """The three terms and their total (CE + 20·body + 50·edge); logits [N, C, h, w], labels [N, H, W]."""
    import torch.nn.functional as F

    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {list(student_logits.shape)} and teacher logits {list(teacher_logits.shape)} differ")
    mask = edge_mask(labels, student_logits.shape[1], tuple(student_logits.shape[-2:]))
    e = edge_loss(student_logits, teacher_logits.detach(), mask, temperature)
    b = body_loss(student_logits, teacher_logits.detach(), mask, temperature)
    total = EDGE_WEIGHT * e + BODY_WEIGHT * b
    out = {"edge": e, "body": b}
    if with_ce:
        up = (
            student_logits
            if student_logits.shape[-2:] == labels.shape[-2:]
            else F.interpolate(student_logits, labels.shape[-2:], mode="bilinear", align_corners=False)
        )
        out["ce"] = F.cross_entropy(up, labels.long())
        total = total + out["ce"]
    out["total"] = total
    return out
