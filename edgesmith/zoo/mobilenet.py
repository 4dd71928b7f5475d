"""MobileNetV2 (Sandler et al. 2018): inverted residuals with depthwise convs, ReLU6, 224x224."""

from __future__ import annotations

import functools

from edgesmith.zoo.resnet import RANDOM_IMAGES, randomise_bn


def conv_bn(nn, cin, cout, k, s, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU6(inplace=True)] if act else layers


def inverted_residual(nn, cin: int, cout: int, stride: int, expand: int):
    """MobileNetV2's block: 1x1 expand (skipped at expansion 1), 3x3 depthwise, 1x1 linear projection,
    with a residual connection when shapes allow."""

    class InvertedResidual(nn.Module):
        def __init__(self):
            super().__init__()
            hidden = cin * expand
            layers = conv_bn(nn, cin, hidden, 1, 1) if expand != 1 else []
            layers += conv_bn(nn, hidden, hidden, 3, stride, groups=hidden) + conv_bn(nn, hidden, cout, 1, 1, act=False)
            self.block = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.block(x) if self.residual else self.block(x)

    return InvertedResidual()


def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0, seed: int = 0):
    """Random-weight MobileNetV2 with torchvision's layer configuration."""
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)

    cbn = functools.partial(conv_bn, nn)

    def c(ch):
        return max(8, int(ch * width_mult + 4) // 8 * 8)

    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    cin = c(32)
    layers = cbn(3, cin, 3, 2)
    for t, ch, n, s in settings:
        for i in range(n):
            layers.append(inverted_residual(nn, cin, c(ch), s if i == 0 else 1, t))
            cin = c(ch)
    layers += cbn(cin, 1280, 1, 1) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(1280, num_classes)]
    model = nn.Sequential(*layers)
    randomise_bn(model)
    return model.eval()


mobilenet_v2.input_spec = [{"name": "input", "shape": ["batch", 3, 224, 224], "dtype": "float32"}]
mobilenet_v2.defaults = RANDOM_IMAGES  # what `edgesmith optimize` uses when no --data is given
