"""A small segmentation task from real data, and encoder-decoder teacher/student networks for it.

Each digit (upsampled to 32x32) becomes an image to segment: every pixel whose ink exceeds ``INK`` is
labelled with the digit's class + 1, every other pixel 0 (background) — 11 classes, with real, varied
boundaries (the strokes) and a dominant background, the shape of the problem BPKD (docs/algorithms.md §7)
is about. The networks are a three-stage conv encoder and a two-stage upsampling decoder with a skip
connection, the teacher four times as wide as the student.

    edgesmith.zoo.segmentation:seg_train / seg_test     # (inputs, per-pixel labels) batches
    edgesmith.zoo:seg_teacher, edgesmith.zoo:seg_student
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgesmith.data.digits import load_digits_split

INK = 0.25
NUM_CLASSES = 11


def segment(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[N, 1, H, W] images and [N] digit labels -> [N, H, W] int64 per-pixel labels."""
    return np.where(images[:, 0] > INK, labels[:, None, None] + 1, 0).astype(np.int64)


def _batches(split: str, batch: int = 32):

    x, y = load_digits_split(split, 32)
    masks = segment(x, y)
    for i in range(0, len(x), batch):
        yield x[i : i + batch], masks[i : i + batch]


def seg_train():
    return _batches("train")


def seg_test():
    return _batches("test")


def encoder_decoder(width: int = 32, num_classes: int = NUM_CLASSES) -> Any:
    import torch
    import torch.nn as nn

    def cbr(cin: int, cout: int, stride: int = 1) -> Any:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class EncoderDecoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc1, self.enc2, self.enc3 = cbr(1, width), cbr(width, 2 * width, 2), cbr(2 * width, 4 * width, 2)
            self.dec2, self.dec1 = cbr(4 * width + 2 * width, 2 * width), cbr(2 * width + width, width)
            self.head = nn.Conv2d(width, num_classes, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            e1 = self.enc1(x)
            e2 = self.enc2(e1)
            e3 = self.enc3(e2)
            d2 = self.dec2(torch.cat([nn.functional.interpolate(e3, scale_factor=2.0), e2], 1))
            d1 = self.dec1(torch.cat([nn.functional.interpolate(d2, scale_factor=2.0), e1], 1))
            return self.head(d1)

    return EncoderDecoder()


def seg_teacher() -> Any:
    return encoder_decoder(32)


def seg_student() -> Any:
    return encoder_decoder(8)


def miou(pred: np.ndarray, labels: np.ndarray, num_classes: int = NUM_CLASSES) -> float:
    """Mean intersection over union across the classes present in the labels or the prediction (percent)."""
    ious = []
    for c in range(num_classes):
        p, t = pred == c, labels == c
        union = np.logical_or(p, t).sum()
        if union:
            ious.append(np.logical_and(p, t).sum() / union)
    return float(np.mean(ious) * 100)


_SPEC = [{"name": "input", "shape": ["batch", 1, 32, 32], "dtype": "float32"}]
_DATA = {"calibration": {"source": "edgesmith.zoo.segmentation:seg_train"}, "evaluation": {"source": "edgesmith.zoo.segmentation:seg_test"}}
for _f in (seg_teacher, seg_student):
    _f.input_spec = _SPEC
    _f.defaults = {"data": _DATA, "metric": "edgesmith.zoo.segmentation:miou_metric"}


def miou_metric(outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """A recipe metric (``metric: edgesmith.zoo.segmentation:miou_metric``): mIoU and pixel accuracy."""
    pred = outputs.argmax(1)
    return {"miou": miou(pred, labels), "pixel_acc": float((pred == labels).mean() * 100)}
