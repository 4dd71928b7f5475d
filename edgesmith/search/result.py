"""What a search found: one record per trial and the result (front, best, closest), which the report writes
and the engine returns (kept apart from both so neither imports the other)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrialRecord:
    number: int
    params: dict[str, Any]
    label: str
    state: str  # complete | failed
    accuracy: float | None = None
    latency_ms: float | None = None
    size_mb: float | None = None
    speedup: float | None = None
    low: float | None = None
    high: float | None = None
    feasible: bool = False
    shortfall: float = 0.0
    gaps: list[str] = field(default_factory=list)
    error: str = ""
    node: str = ""
    timing_node: str = ""
    seconds: float = 0.0
    cache: dict[str, int] = field(default_factory=dict)
    busy: bool = False
    on_front: bool = False


@dataclass
class SearchResult:
    out_dir: Path
    trials: list[TrialRecord]
    front: list[TrialRecord]
    best: TrialRecord | None
    closest: list[TrialRecord]
    accuracy_key: str
    reference: dict[str, Any]
    info: dict[str, Any]
    verdict: str  # pass | fail (no trial within budget) | interrupted
    best_run: Any = None

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "verdict": self.verdict,
            "accuracy_key": self.accuracy_key,
            "reference": self.reference,
            **self.info,
            "best": self.best and self.best.number,
            "front": [t.number for t in self.front],
            "closest": [t.number for t in self.closest],
            "trials": [asdict(t) for t in self.trials],
        }
