"""Training-time building blocks whose deploy form ``compress/reparam.py`` folds (docs/algorithms.md §12):
RIFormer's affine token mixer and RepVGG's three-branch conv block, plus the mixer's folded form.
Build a model from these, train it, and the ``reparam`` pass turns it into the plainer network."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Affine(nn.Module):
    """Per-channel scale and shift over dimension 1 (RIFormer's token mixer)."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.scale.view(shape) + self.bias.view(shape)


class AffineMixerBlock(nn.Module):
    """Training-time RIFormer token mixer: x + affine(norm(x)) − norm(x)."""

    def __init__(self, channels: int, groups: int = 1):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.mixer = Affine(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.norm(x)
        return x + self.mixer(z) - z


class FoldedMixer(nn.Module):
    """Deploy-time form: x + norm'(x)."""

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(x)


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout))


class RepVGGBlock(nn.Module):
    """Training-time RepVGG block: ReLU(BN(conv3x3) + BN(conv1x1) [+ BN(x)])."""

    def __init__(self, cin: int, cout: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.dense = _conv_bn(cin, cout, 3, stride, groups)
        self.point = _conv_bn(cin, cout, 1, stride, groups)
        self.identity = nn.BatchNorm2d(cout) if cin == cout and stride == 1 else None
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dense(x) + self.point(x)
        if self.identity is not None:
            y = y + self.identity(x)
        return F.relu(y)
