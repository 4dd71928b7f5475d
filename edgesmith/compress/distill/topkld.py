"""TopKLD — distillation that balances explicit and implicit knowledge (docs/algorithms.md §6).

The paper ("Dissecting Bit-Level Scaling Laws in Quantizing Vision Generative Models") does not publish
its formula. **This is edgesmith's reading of it**, as documented in docs/algorithms.md §6: split the
teacher's distribution into its top-k classes (the explicit knowledge) and the rest (the implicit
knowledge, the "dark" tail), and match each part separately so the tail is not drowned by the head:

    L = KL(p_t^top ‖ p_s^top) + β·[ KL(b_t ‖ b_s) + KL(p_t^tail ‖ p_s^tail) ]

where p^top / p^tail are the distributions renormalised over the teacher's top-k / remaining classes
(the same index sets for the student), and b = (mass of top-k, mass of tail) is the two-bin split.
Plain KL decomposes over that partition as KL(b_t ‖ b_s) + m_top·KL_top + m_tail·KL_tail (m: the
teacher's masses), so the tail's shape counts only in proportion to its tiny mass; here the head
counts fully and the tail's shape with weight β, whatever its mass. With k = all classes it is exactly
KL(p_t ‖ p_s); it is zero when student = teacher and never negative (a sum of KLs). T softens both as
in Hinton's KD (scaled by T²).
"""

from __future__ import annotations

from typing import Any


def topk_kld(student_logits: Any, teacher_logits: Any, k: int = 5, beta: float = 1.0, temperature: float = 1.0) -> Any:
    import torch
    import torch.nn.functional as F

    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {list(student_logits.shape)} and teacher logits {list(teacher_logits.shape)} differ")
    C = teacher_logits.shape[1]
    if not 1 <= k <= C:
        raise ValueError(f"k must be between 1 and the number of classes ({C}), got {k}")
    T = temperature
    zs, zt = student_logits / T, teacher_logits / T
    if zs.dim() > 2:  # segmentation logits [N, C, H, W]: one distribution per pixel
        zs = zs.movedim(1, -1).reshape(-1, C)
        zt = zt.movedim(1, -1).reshape(-1, C)
    top = torch.zeros_like(zt, dtype=torch.bool).scatter_(1, zt.topk(k, dim=1).indices, True)
    lps, lpt = F.log_softmax(zs, 1), F.log_softmax(zt, 1)
    neg = torch.finfo(zs.dtype).min

    def part_kl(mask: Any) -> Any:
        # KL between the two distributions renormalised over the classes in ``mask``
        s = F.log_softmax(zs.masked_fill(~mask, neg), 1)
        t = F.log_softmax(zt.masked_fill(~mask, neg), 1)
        return torch.where(mask, t.exp() * (t - s), torch.zeros_like(t)).sum(1)

    def mass(lp: Any, mask: Any) -> Any:
        return torch.logsumexp(lp.masked_fill(~mask, neg), 1)

    explicit = part_kl(top)
    loss = explicit
    if k < C:
        ls_top, lt_top = mass(lps, top), mass(lpt, top)
        ls_tail, lt_tail = mass(lps, ~top), mass(lpt, ~top)
        two_bin = lt_top.exp() * (lt_top - ls_top) + lt_tail.exp() * (lt_tail - ls_tail)
        loss = explicit + beta * (two_bin + part_kl(~top))
    return loss.mean() * T * T
