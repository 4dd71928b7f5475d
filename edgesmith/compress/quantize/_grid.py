"""Integer weight grids shared by the torch-level weight quantizers (``rtn``, ``gpfq``, ``bias_correction``).

A grid is ``bits`` wide, symmetric (zero offset, levels -(2^(b-1)-1)..2^(b-1)-1, so it is storable as
signed b-bit integers and maps onto ONNX's symmetric int8/int4 QuantizeLinear) or asymmetric (levels
0..2^b-1 with a zero point), with one scale per tensor, per output channel, or per group of
``group_size`` consecutive input weights of each output channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Granularity = Literal["per-tensor", "per-channel", "per-group"]


@dataclass(frozen=True)
class Grid:
    bits: int = 4
    granularity: Granularity = "per-channel"
    symmetric: bool = True
    group_size: int = 32

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 8:
            raise ValueError(f"bits must be 2..8, got {self.bits}")
        if self.group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {self.group_size}")

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1) - 1) if self.symmetric else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.symmetric else 2**self.bits - 1

    def _blocks(self, w: Any) -> Any:
        """``w`` as [blocks, elements]: the rows that share one scale."""
        flat = w.reshape(w.shape[0], -1)
        if self.granularity == "per-tensor":
            return flat.reshape(1, -1)
        if self.granularity == "per-channel":
            return flat
        n = flat.shape[1]
        g = min(self.group_size, n)
        pad = (-n) % g
        if pad:
            import torch

            flat = torch.cat([flat, flat[:, -1:].expand(-1, pad)], dim=1)  # NOTE: padding repeats a real weight, so ranges are unchanged
        return flat.reshape(-1, g)

    def params(self, w: Any) -> tuple[Any, Any]:
        """Scale and zero point per block (both shaped [blocks, 1])."""
        import torch

        blocks = self._blocks(w.detach().float())
        if self.symmetric:
            scale = blocks.abs().amax(dim=1, keepdim=True) / self.qmax
            zero = torch.zeros_like(scale)
        else:
            lo = blocks.amin(dim=1, keepdim=True).clamp(max=0)
            hi = blocks.amax(dim=1, keepdim=True).clamp(min=0)
            scale = (hi - lo) / (self.qmax - self.qmin)
            zero = torch.round(-lo / scale.clamp(min=1e-12)).clamp(self.qmin, self.qmax)
        return scale.clamp(min=1e-12), zero

    def quantize(self, w: Any) -> tuple[Any, Any, Any]:
        """Round to nearest: integer levels (shaped like the blocks), scale, zero point."""
        import torch

        scale, zero = self.params(w)
        q = torch.clamp(torch.round(self._blocks(w.detach().float()) / scale) + zero, self.qmin, self.qmax)
        return q, scale, zero

    def dequantize_like(self, q: Any, scale: Any, zero: Any, w: Any) -> Any:
        """Levels back to float weights with ``w``'s shape."""
        deq = (q - zero) * scale
        n = w[0].numel()
        if self.granularity == "per-group":
            deq = deq.reshape(w.shape[0], -1)[:, :n]
        return deq.reshape(w.shape).to(w.dtype)

    def fake_quant(self, w: Any) -> Any:
        q, s, z = self.quantize(w)
        return self.dequantize_like(q, s, z, w)

    def describe(self) -> str:
        g = f"groups of {self.group_size}" if self.granularity == "per-group" else self.granularity
        return f"{self.bits}-bit {'symmetric' if self.symmetric else 'asymmetric'} {g}"
