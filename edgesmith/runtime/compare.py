"""A/B latency comparison that does not flake on a noisy machine.

Both artifacts run in one child process, interleaved in rounds (``runtime.bench.time_interleaved``),
so drift hits them alike. The figure is the ratio of median latencies B/A with a bootstrap
confidence interval that resamples whole rounds (a block bootstrap: times within a round share the
machine's state, so single runs are not independent draws).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgesmith.runtime.bench import run_worker


@dataclass
class Comparison:
    ratio: float  # median latency of B / median latency of A (< 1: B is faster)
    low: float
    high: float
    confidence: float
    rounds: int
    per_round: int
    a_p50_ms: float
    b_p50_ms: float
    a_times_ms: list[float] | None = field(default=None, repr=False)  # every timed run, rounds in order
    b_times_ms: list[float] | None = field(default=None, repr=False)
    machine: dict | None = None  # runtime.contention: was the machine free while this was timed?

    @property
    def busy(self) -> bool:
        return bool(self.machine and self.machine.get("busy"))

    @property
    def verdict(self) -> str:
        if self.busy:
            return "not judged: the machine was busy"
        if self.high < 1.0:
            return "B is faster"
        if self.low > 1.0:
            return "B is slower"
        return "no significant difference"

    def describe(self) -> str:
        speed = 1.0 / self.ratio
        return (
            f"latency B/A = {self.ratio:.3f} ({self.confidence:.0%} CI {self.low:.3f}-{self.high:.3f}, "
            f"{self.rounds} rounds x {self.per_round} runs): {self.verdict}"
            + (f", {speed:.2f}x the speed of A" if self.verdict in ("B is faster", "B is slower") else "")
            + (f" ({'; '.join((self.machine or {}).get('reasons', []))})" if self.busy else "")
        )

    def as_dict(self) -> dict[str, Any]:
        d = {**asdict(self), "verdict": self.verdict}
        del d["a_times_ms"], d["b_times_ms"]
        return d


def pooled_percentiles(rounds: Sequence[Any], picks: np.ndarray, q: float) -> np.ndarray:
    """For each row of ``picks`` (indices into ``rounds``: one bootstrap resample), the ``q``-th percentile
    of the picked rounds pooled. Rounds of one length are gathered as one array, a block of resamples at a
    time (a loop of 2000 concatenations cost 0.1 s per interval: 2.4 s of a digits run); others row by row."""
    arrays = [np.asarray(r, dtype=np.float64) for r in rounds]
    out = np.empty(len(picks))
    if len({len(r) for r in arrays}) == 1:
        stack = np.stack(arrays)
        step = max(1, 2_000_000 // max(1, picks.shape[1] * stack.shape[1]))  # at most ~16 MB gathered at once
        for start in range(0, len(picks), step):
            rows = picks[start : start + step]
            out[start : start + len(rows)] = np.percentile(stack[rows].reshape(len(rows), -1), q, axis=1)
        return out
    for i, row in enumerate(picks):
        out[i] = np.percentile(np.concatenate([arrays[j] for j in row]), q)
    return out


def bootstrap_ratio(
    a_rounds: Sequence[Any],
    b_rounds: Sequence[Any],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    paired: bool = True,
) -> tuple[float, float, float]:
    """Median(B)/median(A) and its percentile bootstrap interval over resampled rounds.

    ``paired``: round i of A and of B ran back to back (interleaved), so they are resampled together;
    otherwise (two separate measurements, e.g. a recorded baseline) each side is resampled on its own."""
    a = [np.asarray(r, dtype=np.float64) for r in a_rounds]
    b = [np.asarray(r, dtype=np.float64) for r in b_rounds]
    if not a or not b or (paired and len(a) != len(b)):
        raise ValueError("need the same, non-zero number of rounds for A and B" if paired else "need rounds for A and B")
    point = float(np.median(np.concatenate(b)) / np.median(np.concatenate(a)))
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, len(a), size=(resamples, len(a)))
    ib = ia if paired else rng.integers(0, len(b), size=(resamples, len(b)))
    ratios = pooled_percentiles(b, ib, 50.0) / pooled_percentiles(a, ia, 50.0)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(ratios, [tail, 100.0 - tail])
    return point, float(low), float(high)


def compare(
    a: Any, b: Any, feeds: dict[str, np.ndarray], threads: int, rounds: int = 20, per_round: int = 10, warmup: int = 10, confidence: float = 0.95
) -> Comparison:
    """Interleaved A/B latency of two artifacts (runtime.base.Artifact) on this machine."""

    res_a, res_b = run_worker([a, b], feeds, threads, warmup, rounds * per_round, None, rounds, raw=True)
    split = lambda times: [times[i * per_round : (i + 1) * per_round] for i in range(rounds)]  # noqa: E731
    ratio, low, high = bootstrap_ratio(split(res_a["times_ms"]), split(res_b["times_ms"]), confidence)
    return Comparison(
        ratio, low, high, confidence, rounds, per_round, res_a["p50_ms"], res_b["p50_ms"], res_a["times_ms"], res_b["times_ms"], res_a.get("machine")
    )
