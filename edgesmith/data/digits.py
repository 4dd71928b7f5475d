"""scikit-learn's ``load_digits``: 1,797 real 8x8 handwritten digits, shipped inside the package.

A fixed, seeded split: ``train`` (1,197 images) trains the zoo model and feeds calibration,
``test`` (600 images) is held out for evaluation.
"""

from __future__ import annotations

import numpy as np

from edgesmith._lazy import require
from edgesmith.errors import ConfigError

TEST_SIZE = 600
SPLIT_SEED = 0


def load_digits_split(split: str, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 [N, 1, size, size] scaled to [0, 1] (bilinear upsampling from 8x8 when
    ``size`` > 8: the ``digits32`` source the zoo's ResNet- and MobileNet-style models use) and int64 labels."""

    datasets = require("sklearn.datasets")
    bunch = datasets.load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    test, train = order[:TEST_SIZE], order[TEST_SIZE:]
    idx = {"train": train, "test": test, "all": order}.get(split)
    if idx is None:
        raise ConfigError(f"unknown digits split {split!r}", hint="use one of: train, test, all")
    x, y = x[idx], y[idx]
    if size != 8:
        x = _upsample(x, size)
    return x, y


def _upsample(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (align_corners=False, as torch's F.interpolate), separable, in numpy."""
    n = x.shape[-1]
    src = (np.arange(size) + 0.5) * n / size - 0.5
    lo = np.clip(np.floor(src).astype(int), 0, n - 1)
    hi = np.clip(lo + 1, 0, n - 1)
    frac = np.clip(src - lo, 0.0, 1.0).astype(np.float32)
    m = np.zeros((size, n), np.float32)
    m[np.arange(size), lo] += 1 - frac
    m[np.arange(size), hi] += frac
    return np.einsum("ih,nchw,jw->ncij", m, x, m).astype(np.float32)
