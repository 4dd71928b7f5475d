"""scikit-learn's ``load_digits``: 1,797 real 8x8 handwritten digits, shipped inside the package.

A fixed, seeded split: ``train`` (1,197 images) trains the zoo model and feeds calibration,
``test`` (600 images) is held out for evaluation.
"""

from __future__ import annotations

import numpy as np

TEST_SIZE = 600
SPLIT_SEED = 0


def load_digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 [N, 1, 8, 8] scaled to [0, 1] and int64 labels."""
    from edgesmith._lazy import require

    datasets = require("sklearn.datasets")
    bunch = datasets.load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    test, train = order[:TEST_SIZE], order[TEST_SIZE:]
    idx = {"train": train, "test": test, "all": order}.get(split)
    if idx is None:
        from edgesmith.errors import ConfigError

        raise ConfigError(f"unknown digits split {split!r}", hint="use one of: train, test, all")
    return x[idx], y[idx]
