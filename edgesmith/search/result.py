"""What a search found: its trials (the engine's one record, ``edgesmith.engine.TrialRecord``) and the result
(front, best, closest), which the report writes and the search returns (kept apart from both so neither
imports the other)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesmith.engine import TrialRecord

__all__ = ["SearchResult", "TrialRecord"]


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
        return {
            "verdict": self.verdict,
            "accuracy_key": self.accuracy_key,
            "reference": self.reference,
            **self.info,
            "best": self.best and self.best.number,
            "front": [t.number for t in self.front],
            "closest": [t.number for t in self.closest],
            "trials": [t.as_dict() for t in self.trials],
        }
