"""ResNet-style, MobileNetV2-style and PReLU multi-head networks for the digits upsampled to 32x32
(``digits32``), and the BERT-style token encoder (zoo/encoder.py), trained on demand and cached, so
tests and benchmarks measure compression on trained models of each kind (depthwise convolutions are
where quantization hurts; PReLU and transformers are where default quantizer settings fail).

    edgesmith zoo train                      # trains what is not cached yet (~1 min each on 2 cores)
    edgesmith.zoo:trained_digits_resnet      # in a recipe: the cached (or freshly trained) model

The cache lives in ``$EDGESMITH_CACHE_DIR`` (default ``~/.cache/edgesmith``; the old ``$EDGESMITH_CACHE`` still works)/zoo/<name>-s<seed>-e<epochs>.safetensors.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgesmith.errors import ConfigError
from edgesmith.outputs import atomic_write_bytes
from edgesmith.terminal import say
from edgesmith.zoo.encoder import INPUT_SPEC as TOKEN_SPEC
from edgesmith.zoo.encoder import digits_encoder, tokenize
from edgesmith.zoo.mobilenet import conv_bn, inverted_residual
from edgesmith.zoo.resnet import basic_block
from edgesmith.zoo.train_digits import train

INPUT_SPEC = [{"name": "input", "shape": ["batch", 1, 32, 32], "dtype": "float32"}]


def digits_resnet(width: int = 16, num_classes: int = 10):
    """A ResNet-18-style network at small scale: 3x3 stem, three stages of two BasicBlocks
    (width, 2·width, 4·width; strides 1, 2, 2) with projection shortcuts, BN, ReLU, global pooling."""
    import torch.nn as nn

    layers = [nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    cin = width
    for cout, stride in ((width, 1), (2 * width, 2), (4 * width, 2)):
        layers += [basic_block(nn, cin, cout, stride), basic_block(nn, cout, cout, 1)]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))


def digits_mobilenet(num_classes: int = 10):
    """A MobileNetV2-style network at small scale: inverted residuals (1x1 expand, 3x3 depthwise,
    1x1 project, ReLU6, expansion 4) over 16-24-32-64 channels."""
    import torch.nn as nn

    def cbn(*args, **kw):
        return conv_bn(nn, *args, **kw)

    layers = cbn(1, 16, 3, 1)
    cin = 16
    for cout, n, stride in ((16, 1, 1), (24, 2, 2), (32, 2, 2), (64, 2, 1)):
        for i in range(n):
            layers.append(inverted_residual(nn, cin, cout, stride if i == 0 else 1, 4))
            cin = cout
    layers += cbn(cin, 256, 1, 1) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, num_classes)]
    return nn.Sequential(*layers)


def digits_prelu_heads(width: int = 32):
    """A small CNN with PReLU activations (one slope per channel) and two linear heads: the digit
    (10 classes) and its parity (2 classes); two outputs, ``digit`` first."""
    import torch.nn as nn

    class PReLUHeads(nn.Module):
        def __init__(self):
            super().__init__()
            chans = (1, width // 2, width, 2 * width, 2 * width)
            layers = []
            for cin, cout, stride in zip(chans, chans[1:], (1, 2, 2, 1)):
                layers += [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout)]
            self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.digit, self.parity = nn.Linear(2 * width, 10), nn.Linear(2 * width, 2)

        output_names = ("digit", "parity")  # what the exported ONNX outputs are called

        def forward(self, x):
            f = self.features(x)
            return self.digit(f), self.parity(f)

    return PReLUHeads()


def _encoder():

    return digits_encoder()


def _tokens(x):

    return tokenize(x)


def digits_detector(width: int = 32):
    """A detector-style CNN on the 8x8 digits with three outputs, like a face detector's class / box /
    landmark heads: ``digit`` (10 logits), ``box`` (the ink's bounding box x0, y0, x1, y1 in [0, 1]) and
    ``centroid`` (the ink's centre of mass x, y in [0, 1]); trained on the real digits (targets from the images)."""
    import torch.nn as nn

    class Detector(nn.Module):
        output_names = ("digit", "box", "centroid")

        def __init__(self):
            super().__init__()
            layers, cin = [], 1
            for cout in (width, width, 2 * width):
                layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
                cin = cout
            self.features = nn.Sequential(*layers, nn.Flatten())
            self.digit, self.box, self.centroid = nn.Linear(cin * 64, 10), nn.Linear(cin * 64, 4), nn.Linear(cin * 64, 2)

        def forward(self, x):
            f = self.features(x)
            return self.digit(f), self.box(f), self.centroid(f)

    return Detector()


def ink_targets(x: Any) -> list:
    """Bounding box (x0, y0, x1, y1) of pixels above 0.25 and the intensity-weighted centroid, both in
    [0, 1] image coordinates, for a batch of [N, 1, H, W] images (torch or numpy)."""
    import torch

    t = torch.as_tensor(x)[:, 0]
    n, h, w = t.shape
    ink = t > 0.25
    ys, xs = torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32)
    rows, cols = ink.any(dim=2), ink.any(dim=1)
    first = lambda m: m.float().argmax(dim=1).float()  # noqa: E731
    last = lambda m: (m.shape[1] - 1 - m.flip(1).float().argmax(dim=1)).float()  # noqa: E731
    box = torch.stack([first(cols) / (w - 1), first(rows) / (h - 1), last(cols) / (w - 1), last(rows) / (h - 1)], dim=1)
    mass = t.clamp(min=0).sum(dim=(1, 2)).clamp(min=1e-6)
    centroid = torch.stack([(t.sum(dim=1) * xs).sum(dim=1) / mass / (w - 1), (t.sum(dim=2) * ys).sum(dim=1) / mass / (h - 1)], dim=1)
    return [box, centroid]


ARCHS: dict[str, Callable[[], Any]] = {
    "digits_resnet": digits_resnet,
    "digits_mobilenet": digits_mobilenet,
    "digits_prelu_heads": digits_prelu_heads,
    "digits_encoder": _encoder,
    "digits_detector": digits_detector,
}
EPOCHS = {"digits_resnet": 12, "digits_mobilenet": 20, "digits_prelu_heads": 10, "digits_encoder": 30, "digits_detector": 15}
# how each is trained: image size, model arguments from the images, labels per output
TRAIN: dict[str, dict[str, Any]] = {
    "digits_prelu_heads": {"heads": lambda y, x: [y, y % 2]},
    "digits_detector": {"size": 8, "heads": lambda y, x: [y, *ink_targets(x)]},
    "digits_encoder": {"size": 8, "inputs": _tokens, "lr": 1e-3},
}


def cache_dir() -> Path:
    # NOTE: EDGESMITH_CACHE_DIR is the one cache setting; EDGESMITH_CACHE, this folder's old name, still works
    return Path(os.environ.get("EDGESMITH_CACHE_DIR") or os.environ.get("EDGESMITH_CACHE") or Path.home() / ".cache" / "edgesmith") / "zoo"


def cached_path(name: str, seed: int = 0, epochs: int | None = None) -> Path:
    return cache_dir() / f"{name}-s{seed}-e{epochs or EPOCHS[name]}.safetensors"


def train_cached(
    name: str, seed: int = 0, force: bool = False, log: Callable[[str], None] | None = None, epochs: int | None = None
) -> tuple[Path, float | None]:
    """Train ``name`` on digits32 (train split) unless cached; returns the checkpoint and its held-out top-1 (None if cached)."""
    from safetensors.torch import save

    if name not in ARCHS:
        raise ConfigError(f"unknown zoo model {name!r}", hint=f"trainable zoo models: {', '.join(ARCHS)}")
    epochs = epochs or EPOCHS[name]
    path = cached_path(name, seed, epochs)
    if path.is_file() and not force:
        return path, None
    if log:
        log(f"training {name} on digits32 ({epochs} epochs, seed {seed}); cached at {path}")
    model, acc = train(ARCHS[name], epochs, seed, **{"size": 32, **TRAIN.get(name, {})})
    atomic_write_bytes(path, save({k: v.contiguous() for k, v in model.state_dict().items()}))
    return path, acc


def _trained(name: str) -> Any:

    from safetensors.torch import load_file

    path, _ = train_cached(name, log=lambda m: say(f"edgesmith: {m}", err=True))
    model = ARCHS[name]()
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def trained_digits_resnet():
    """``digits_resnet`` trained on digits32 (cached; trained on first use)."""
    return _trained("digits_resnet")


def trained_digits_mobilenet():
    """``digits_mobilenet`` trained on digits32 (cached; trained on first use)."""
    return _trained("digits_mobilenet")


def trained_digits_detector():
    """``digits_detector`` trained on the digits (class, ink box, ink centroid; cached; trained on first use)."""
    return _trained("digits_detector")


def trained_digits_prelu_heads():
    """``digits_prelu_heads`` trained on digits32 (cached; trained on first use)."""
    return _trained("digits_prelu_heads")


def trained_digits_encoder():
    """The BERT-style ``digits_encoder`` trained on the digits as token sequences (cached; trained on first use)."""
    return _trained("digits_encoder")


DIGITS32 = {"calibration": {"source": "digits32", "split": "train", "samples": 256}, "evaluation": {"source": "digits32", "split": "test"}}
for _f in (digits_resnet, digits_mobilenet, digits_prelu_heads, trained_digits_resnet, trained_digits_mobilenet, trained_digits_prelu_heads):
    _f.input_spec = INPUT_SPEC
    _f.defaults = {"data": DIGITS32}  # what `edgesmith optimize` uses when no --data is given
trained_digits_encoder.input_spec = TOKEN_SPEC
trained_digits_encoder.defaults = {
    "data": {"calibration": {"source": "edgesmith.zoo.encoder:tokens_train", "samples": 256}, "evaluation": {"source": "edgesmith.zoo.encoder:tokens_test"}}
}
DIGITS8 = {"calibration": {"source": "digits", "split": "train", "samples": 256}, "evaluation": {"source": "digits", "split": "test"}}
for _f in (digits_detector, trained_digits_detector):
    _f.input_spec = [{"name": "input", "shape": ["batch", 1, 8, 8], "dtype": "float32"}]
    _f.defaults = {"data": DIGITS8}
