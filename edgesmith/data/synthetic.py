"""Seeded example inputs of an input spec's shape (export tracing, parity checks, benchmark feeds)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgesmith.environment import physical_memory
from edgesmith.errors import InputError

EXAMPLE_BATCH = 2  # NOTE: not 1 — torch.export specialises size-1 dimensions to static


def example_inputs(input_specs: Sequence[Any], batch: int = EXAMPLE_BATCH, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in input_specs:
        first = spec.shape[0] if spec.shape and isinstance(spec.shape[0], int) else batch  # a fixed batch is the model's
        shape = [first] + [d if isinstance(d, int) else 8 for d in spec.shape[1:]]
        _check_fits(spec.name, shape, np.dtype(spec.dtype))
        if spec.dtype.startswith("float"):
            feeds[spec.name] = rng.standard_normal(shape, dtype=np.float32).astype(spec.dtype, copy=False)
        elif spec.dtype == "bool":
            feeds[spec.name] = np.ones(shape, dtype=bool)
        else:
            feeds[spec.name] = rng.integers(0, 2, size=shape, dtype=np.int64).astype(spec.dtype, copy=False)
    return feeds


def _check_fits(name: str, shape: list[int], dtype: np.dtype) -> None:
    """An input whose fixed sizes ask for more than half this machine's memory is refused before numpy tries."""
    need = math.prod(shape) * max(dtype.itemsize, 4)  # float16 and integers are drawn as 4-byte values first
    total = physical_memory()
    if total is not None and need > total // 2:
        raise InputError(
            f"an example of input {name!r} with shape {shape} needs {need / 2**30:.1f} GiB, more than half of this machine's {total / 2**30:.1f} GiB",
            hint="check the input's fixed dimensions (in the model or `inputs:`); a smaller --batch helps only when the batch is the large one",
        )
