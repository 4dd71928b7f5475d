"""In-memory objects handed to the Python API (an ``nn.Module``, arrays, a DataLoader) under a name a
Recipe can hold: ``edgesmith.memory:objects.<key>``. They live as long as the process; a recipe saved
with such a name cannot be run from another process (the API says so where it matters)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

objects = SimpleNamespace()
_ids = itertools.count()
PREFIX = "edgesmith.memory:objects."


def register(obj: Any, kind: str) -> str:
    key = f"{kind}_{next(_ids)}"
    setattr(objects, key, obj)
    return PREFIX + key


def is_memory_ref(ref: str | None) -> bool:
    return bool(ref) and str(ref).startswith(PREFIX)
