"""Is a difference between baseline and now real, or noise?

Accuracy: both runs answer the same evaluation samples, so the test is paired — McNemar's exact test
on the samples whose correctness changed (when per-sample answers were recorded), else a two-sample
binomial interval. Latency: a bootstrap interval of the latency ratio now/baseline, read against the
tolerance: beyond it entirely -> regression; within it entirely -> pass; straddling it -> inconclusive.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for ``b`` samples lost and ``c`` gained (binomial, p = 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def accuracy_noise(
    base_pct: float, now_pct: float, n: int, base_correct: np.ndarray | None = None, now_correct: np.ndarray | None = None, confidence: float = 0.95
) -> tuple[bool, str]:
    """Whether ``now - base`` (percent of ``n`` samples) is within sampling noise, and how that was judged."""
    alpha = 1.0 - confidence
    if base_correct is not None and now_correct is not None and len(base_correct) == len(now_correct) == n:
        lost = int(np.sum(base_correct & ~now_correct))
        gained = int(np.sum(~base_correct & now_correct))
        p = mcnemar_p(lost, gained)
        within = p > alpha
        return within, (f"{'within' if within else 'beyond'} sampling noise (McNemar p={p:.2g}: {lost} of {n} samples now wrong, {gained} now right)")
    p1, p2 = base_pct / 100.0, now_pct / 100.0
    se = math.sqrt(max(p1 * (1 - p1), 1.0 / n) / n + max(p2 * (1 - p2), 1.0 / n) / n) * 100.0
    z = _z(confidence)
    within = abs(now_pct - base_pct) <= z * se
    return within, f"{'within' if within else 'beyond'} sampling noise (±{z * se:.2g} pt at {confidence:.0%} with n={n}, unpaired)"


def paired_drop(base_correct: np.ndarray, now_correct: np.ndarray, allowed_pt: float, confidence: float = 0.95) -> tuple[str, str]:
    """Decide a top-1 drop on paired per-sample answers: ``fail`` when the drop exceeds ``allowed_pt`` points
    with ``confidence`` (the interval's low end beyond it), ``pass`` when its high end is within, else
    ``inconclusive``; and how it was decided. The interval is the normal one of the mean paired difference."""
    base_correct, now_correct = np.asarray(base_correct, bool), np.asarray(now_correct, bool)
    n = len(base_correct)
    lost = int(np.sum(base_correct & ~now_correct))
    gained = int(np.sum(~base_correct & now_correct))
    mean = (lost - gained) / n
    var = max((lost + gained) / n - mean * mean, 0.0) * n / max(n - 1, 1)
    half = _z(confidence) * math.sqrt(var / n) * 100.0
    drop, low, high = 100.0 * mean, 100.0 * mean - half, 100.0 * mean + half
    status = "fail" if low > allowed_pt + 1e-9 else "pass" if high <= allowed_pt + 1e-9 else "inconclusive"
    text = (
        f"paired test on {n} samples ({lost} now wrong, {gained} now right): drop {drop:.3g} pt, {confidence:.0%} interval "
        f"{low:.3g} to {high:.3g} pt against {allowed_pt:.3g} allowed; McNemar p={mcnemar_p(lost, gained):.2g}"
    )
    if status == "inconclusive":
        text += " — the data cannot decide (more evaluation samples would)"
    return status, text


def _z(confidence: float) -> float:

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


def relative_ratio(
    base_c: list[np.ndarray],
    base_f: list[np.ndarray],
    now_c: list[np.ndarray],
    now_f: list[np.ndarray],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Drift-controlled ratio of two recorded runs: (now compressed / now FP32) / (base compressed / base FP32).

    Each run timed its artifact interleaved with its own FP32 model, round by round, so whatever the
    machine was doing at the time slowed both alike; dividing by the FP32 time cancels that drift, which
    comparing two raw recordings from different times cannot. Rounds are resampled in pairs within a run
    (compressed and FP32 of round i together) and independently between the runs."""
    if len(base_c) != len(base_f) or len(now_c) != len(now_f) or not base_c or not now_c:
        raise ValueError("each run needs the same, non-zero number of rounds for its artifact and its FP32 model")

    def rel(c: list[np.ndarray], f: list[np.ndarray], idx: np.ndarray) -> float:
        return float(np.median(np.concatenate([c[i] for i in idx])) / np.median(np.concatenate([f[i] for i in idx])))

    all_b, all_n = np.arange(len(base_c)), np.arange(len(now_c))
    point = rel(now_c, now_f, all_n) / rel(base_c, base_f, all_b)
    rng = np.random.default_rng(seed)
    ratios = np.empty(resamples)
    for i in range(resamples):
        ratios[i] = rel(now_c, now_f, rng.integers(0, len(now_c), len(now_c))) / rel(base_c, base_f, rng.integers(0, len(base_c), len(base_c)))
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(ratios, [tail, 100.0 - tail])
    return point, float(low), float(high)
