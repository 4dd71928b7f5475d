"""Augmentation for small unlabelled sets: the distillation target is the original model's answer on the
augmented input itself, so every augmented input is a new, correctly "labelled" example for free.

Image-like inputs only (float [N, C, H, W] with H and W >= 16): a random shift of up to 1/16 of the size
(edges replicated) and a random contrast and brightness change per sample. Token ids, tabular rows and
anything else pass through unchanged. No flips or large rotations: text and digits are not symmetric.
"""

from __future__ import annotations

from typing import Any


def is_image(t: Any) -> bool:
    return t.dim() == 4 and t.is_floating_point() and t.shape[-1] >= 16 and t.shape[-2] >= 16


def augment(x: Any, gen: Any) -> Any:
    """One random augmentation of a batch (a tensor, or a tuple of input tensors: image ones changed)."""
    if isinstance(x, tuple):
        return tuple(_image(t, gen) if is_image(t) else t for t in x)
    return _image(x, gen) if is_image(x) else x


def _image(x: Any, gen: Any) -> Any:
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    dy, dx = max(1, h // 16), max(1, w // 16)
    padded = F.pad(x, (dx, dx, dy, dy), mode="replicate")
    oy = int(torch.randint(0, 2 * dy + 1, (1,), generator=gen))
    ox = int(torch.randint(0, 2 * dx + 1, (1,), generator=gen))
    out = padded[:, :, oy : oy + h, ox : ox + w]
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    std = out.std(dim=(1, 2, 3), keepdim=True)
    contrast = 0.8 + 0.45 * torch.rand((n, 1, 1, 1), generator=gen)
    shift = (torch.rand((n, 1, 1, 1), generator=gen) - 0.5) * 0.3 * std
    return (out - mean) * contrast + mean + shift
