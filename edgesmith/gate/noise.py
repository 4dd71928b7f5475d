"""Is a difference between baseline and now real, or noise?

Accuracy: both runs answer the same evaluation samples, so the test is paired — McNemar's exact test
on the samples whose correctness changed (when per-sample answers were recorded), else a two-sample
binomial interval. Latency: a bootstrap interval of the latency ratio now/baseline, read against the
tolerance: beyond it entirely -> regression; within it entirely -> pass; straddling it -> inconclusive.
"""

from __future__ import annotations

import math

import numpy as np


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for ``b`` samples lost and ``c`` gained (binomial, p = 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def accuracy_noise(base_pct: float, now_pct: float, n: int, base_correct: np.ndarray | None = None,
                   now_correct: np.ndarray | None = None, confidence: float = 0.95) -> tuple[bool, str]:
    """Whether ``now - base`` (percent of ``n`` samples) is within sampling noise, and how that was judged."""
    alpha = 1.0 - confidence
    if base_correct is not None and now_correct is not None and len(base_correct) == len(now_correct) == n:
        lost = int(np.sum(base_correct & ~now_correct))
        gained = int(np.sum(~base_correct & now_correct))
        p = mcnemar_p(lost, gained)
        within = p > alpha
        return within, (f"{'within' if within else 'beyond'} sampling noise (McNemar p={p:.2g}: "
                        f"{lost} of {n} samples now wrong, {gained} now right)")
    p1, p2 = base_pct / 100.0, now_pct / 100.0
    se = math.sqrt(max(p1 * (1 - p1), 1.0 / n) / n + max(p2 * (1 - p2), 1.0 / n) / n) * 100.0
    z = _z(confidence)
    within = abs(now_pct - base_pct) <= z * se
    return within, f"{'within' if within else 'beyond'} sampling noise (±{z * se:.2g} pt at {confidence:.0%} with n={n}, unpaired)"


def _z(confidence: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def latency_status(ratio: float, low: float, high: float, tolerance: float) -> str:
    """``pass`` / ``fail`` / ``inconclusive`` for a latency ratio now/baseline with interval [low, high]."""
    if low > tolerance:
        return "fail"
    if high <= tolerance:
        return "pass"
    return "inconclusive"


def blocks(times_ms: list[float], rounds: int) -> list[np.ndarray]:
    """A recorded latency series cut back into its rounds (the bootstrap resamples whole rounds)."""
    rounds = max(1, min(rounds, len(times_ms)))
    return [b for b in np.array_split(np.asarray(times_ms, dtype=np.float64), rounds) if len(b)]
