"""Seeded example inputs of an input spec's shape (export tracing, parity checks, benchmark feeds)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

EXAMPLE_BATCH = 2  # NOTE: not 1 — torch.export specialises size-1 dimensions to static


def example_inputs(input_specs: Sequence[Any], batch: int = EXAMPLE_BATCH, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in input_specs:
        shape = [batch] + [d if isinstance(d, int) else 8 for d in spec.shape[1:]]
        if spec.dtype.startswith("float"):
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype == "bool":
            feeds[spec.name] = np.ones(shape, dtype=bool)
        else:
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(spec.dtype)
    return feeds
