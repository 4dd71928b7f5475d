"""Learned-step-size fake quantization (LSQ, Esser et al. 2020; LSQ+ offsets) and the low-bit gradient
quantizer of docs/algorithms.md §9, as autograd-friendly torch modules for quantization-aware training."""

from __future__ import annotations

from typing import Any


def _round_ste(x: Any) -> Any:
    return (x.round() - x).detach() + x


def _grad_scale(x: Any, scale: float) -> Any:
    return (x - x * scale).detach() + x * scale


def lsq_module(bits: int, per_channel: bool, symmetric: bool, channels: int = 1) -> Any:
    import torch
    import torch.nn as nn

    class LSQ(nn.Module):
        """x_q = clamp(round((x − β)/s), n, p)·s + β, straight-through rounding, step gradient scaled
        by 1/sqrt(numel·p); β ≡ 0 when symmetric. Initialised from the first tensor it sees."""

        def __init__(self) -> None:
            super().__init__()
            self.bits, self.per_channel, self.symmetric = bits, per_channel, symmetric
            self.n = -(2 ** (bits - 1) - 1) if symmetric else 0
            self.p = 2 ** (bits - 1) - 1 if symmetric else 2**bits - 1
            shape = (channels,) if per_channel else (1,)
            self.step = nn.Parameter(torch.ones(shape))
            self.offset = nn.Parameter(torch.zeros(shape), requires_grad=not symmetric)
            self.register_buffer("initialised", torch.tensor(False))

        def _view(self, t: Any, x: Any) -> Any:
            return t.reshape((-1,) + (1,) * (x.dim() - 1)) if self.per_channel else t

        @torch.no_grad()
        def _init(self, x: Any) -> None:
            flat = x.detach().reshape(x.shape[0], -1) if self.per_channel else x.detach().reshape(1, -1)
            if self.symmetric:
                s = flat.abs().amax(dim=1) / self.p
                self.offset.zero_()
            else:
                lo, hi = flat.amin(dim=1), flat.amax(dim=1)
                s = (hi - lo) / (self.p - self.n)
                self.offset.copy_(lo)
            self.step.copy_(s.clamp(min=1e-8))
            self.initialised.fill_(True)

        def forward(self, x: Any) -> Any:
            if not bool(self.initialised):
                self._init(x)
            g = 1.0 / (x.numel() / (x.shape[0] if self.per_channel else 1) * self.p) ** 0.5
            s = self._view(_grad_scale(self.step.abs().clamp(min=1e-8), g), x)
            b = self._view(_grad_scale(self.offset, g), x) if not self.symmetric else 0.0
            return torch.clamp(_round_ste((x - b) / s), self.n, self.p) * s + b

    return LSQ()


class GradientQuantizer:
    """§9: a layer's output gradient G to ``bits`` over [−γ·max|G|, γ·max|G|] with stochastic rounding
    (unbiased inside the range), γ adapted after each step:
    γ ← clip(γ + (1 − 0.999)·sign(r − c/(2^b − 1)), 0.001, 1), r = fraction of |G| above γ·max|G|, c = 1e-3."""

    def __init__(self, bits: int, gamma: float = 1.0, c: float = 1e-3, seed: int = 0):
        import torch

        self.bits, self.gamma, self.c = bits, gamma, c
        self.gen = torch.Generator().manual_seed(seed)

    @property
    def levels(self) -> int:
        return 2**self.bits - 1

    def __call__(self, g: Any) -> Any:
        import torch

        m = g.detach().abs().max()
        if m == 0:
            return g
        bound = self.gamma * m
        step = 2 * bound / (self.levels - 1)
        x = (g.clamp(-bound, bound) + bound) / step
        floor = x.floor()
        q = floor + (torch.rand(x.shape, generator=self.gen, dtype=x.dtype) < (x - floor)).to(x.dtype)
        r = float((g.abs() > bound).float().mean())
        self.gamma = min(max(self.gamma + (1 - 0.999) * (1.0 if r - self.c / self.levels > 0 else -1.0), 0.001), 1.0)
        return q * step - bound
