"""The typed pass contract: records one pass produces and a later pass of the same run consumes.

A pass declares what it ``produces`` and ``requires`` (record types, below) and which passes, when a
recipe has them, must run before it (``runs_after``). The plan
checks a recipe's order against these declarations before any work and refuses a wrong one in one
line naming both passes. Records live in the run's memory only; they are never written out.

Formats are an open set: a pass says what it produces (``int8``, ``int4-weights``, ``binary``,
``sparse-2:4``, ``pruned`` ...) and a profile lists the formats its target runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# formats edgesmith's own passes produce; a plugin may declare others (a profile lists what it accepts)
KNOWN_FORMATS = {
    "fp32": "32-bit float (no compression)",
    "fp16": "16-bit float weights and activations",
    "int8": "8-bit integer weights and activations (QDQ or integer kernels)",
    "int8-weights": "8-bit integer weights, float activations (dynamic quantization)",
    "low-bit-weights": "2-8 bit weight grids stored in int8 containers",
    "int4-weights": "4-bit integer weights (ONNX INT4 + DequantizeLinear), float compute",
    "binary": "1-bit weights and activations (custom op or its standard-op lowering)",
    "pruned": "channels removed: a smaller dense network",
    "sparse": "unstructured zeros in dense weights",
    "sparse-2:4": "N:M structured sparsity",
}


@dataclass(frozen=True)
class FloatWeights:
    """The float weights a weight quantizer replaced, by module name (bias_correction reads them)."""

    entries: Mapping[str, Any] = field(default_factory=dict)
    summary = "the float weights a weight quantizer replaced"


@dataclass(frozen=True)
class WeightGrids:
    """Per layer, the per-output-channel scale and bit width of a torch-level weight grid (ptq_int8
    keeps those grids exact in the integer artifact)."""

    entries: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    summary = "the weight grids torch-level quantizers chose"


@dataclass(frozen=True)
class BatchNormFolded:
    """Batch norms were folded into the preceding layers (equalize then sees the conv pairs)."""

    layers: tuple[str, ...] = ()
    summary = "batch norms folded into their layers"


@dataclass(frozen=True)
class CalibrationCache:
    """A folder where ptq_int8 keeps activation ranges, so candidates of one search calibrate once."""

    folder: Path
    summary = "a shared calibration-range cache"


class Records:
    """The typed records of one run, by type. Mapping records merge when added twice (two weight
    quantizers in one recipe each hand over the layers they replaced)."""

    def __init__(self, *initial: Any):
        self._items: dict[type, Any] = {}
        for r in initial:
            self.add(r)

    def get(self, kind: type[T]) -> T | None:
        return self._items.get(kind)

    def add(self, record: Any) -> None:
        old = self._items.get(type(record))
        if old is not None and hasattr(old, "entries"):
            record = type(record)(entries={**old.entries, **record.entries})
        self._items[type(record)] = record

    def kinds(self) -> list[str]:
        return sorted(k.__name__ for k in self._items)

    def all(self) -> list[Any]:
        return [self._items[k] for k in sorted(self._items, key=lambda k: k.__name__)]
