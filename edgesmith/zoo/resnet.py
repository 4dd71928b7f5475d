"""ResNet-18 (He et al. 2016), layer for layer as torchvision defines it, 224x224 ImageNet head."""

from __future__ import annotations

import numpy as np


def basic_block(nn, cin: int, cout: int, stride: int):
    import torch

    class BasicBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    return BasicBlock()


def resnet18(num_classes: int = 1000, seed: int = 0):
    """Random-weight ResNet-18 (seeded; BN statistics randomised so activations are realistic)."""
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    layers: list = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        layers += [basic_block(nn, cin, cout, stride), basic_block(nn, cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    model = nn.Sequential(*layers)
    randomise_bn(model)
    return model.eval()


def randomise_bn(model) -> None:
    """Give BN layers non-trivial statistics so a random network's activations are not degenerate."""
    import torch
    import torch.nn as nn

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.0)
                m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)


def random_images(n: int = 128, batch: int = 16, size: int = 224, seed: int = 0):
    """Seeded ImageNet-shaped images (normalised RGB statistics), no labels: calibration and fidelity
    data for the random-weight ``resnet18`` and ``mobilenet_v2``, which no real data fits."""

    rng = np.random.default_rng(seed)
    for start in range(0, n, batch):
        yield rng.standard_normal((min(batch, n - start), 3, size, size)).astype(np.float32)


RANDOM_IMAGES = {
    "metric": "fidelity",
    "data": {"calibration": {"source": "edgesmith.zoo.resnet:random_images"}, "evaluation": {"source": "edgesmith.zoo.resnet:random_images"}},
}
resnet18.input_spec = [{"name": "input", "shape": ["batch", 3, 224, 224], "dtype": "float32"}]
resnet18.defaults = RANDOM_IMAGES
