"""The numbers every layer agrees on: top-1, output fidelity (cosine, SQNR) and per-sample answers.

Pure numpy, no runtime: export parity, the evaluator and the CI gate all compute them the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgesmith.errors import InputError

# agreement with the float model (not a task metric): higher is better, 1 (or inf dB) is exact
FIDELITY_METRICS = ("cosine", "sqnr_db", "output_fidelity", "decision_agreement")


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    if labels.ndim != 1:
        raise InputError(
            f"top1 needs one integer class per sample, and the labels have shape {list(labels.shape)}" + (" (one-hot rows?)" if labels.ndim == 2 else ""),
            hint="give class indices (e.g. labels = y.argmax(1)), or a metric function for labels of another kind (sequences, boxes)",
        )
    if logits.ndim != 2 or len(logits) != len(labels):
        raise InputError(
            f"top1 needs [N, classes] outputs and N labels; got outputs {list(logits.shape)} and {len(labels)} labels",
            hint="use `metric: fidelity` for non-classifiers, or a user metric",
        )
    if len(labels) and (int(labels.max()) >= logits.shape[1] or int(labels.min()) < 0):
        raise InputError(
            f"labels run from {int(labels.min())} to {int(labels.max())}, but the model has {logits.shape[1]} classes (0..{logits.shape[1] - 1})",
            hint="these labels are not this model's classes; check the evaluation data",
        )
    return float((logits.argmax(axis=1) == labels).mean() * 100.0)


def cosine(ref: np.ndarray, cand: np.ndarray) -> float:
    r = ref.reshape(len(ref), -1).astype(np.float64)
    c = cand.reshape(len(cand), -1).astype(np.float64)
    num = (r * c).sum(1)
    den = np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1)
    both_zero = den == 0
    sims = np.where(both_zero, 1.0, num / np.where(both_zero, 1.0, den))
    return float(sims.mean())


def sqnr_db(ref: np.ndarray, cand: np.ndarray) -> float:
    signal = float((ref.astype(np.float64) ** 2).sum())
    noise = float(((ref.astype(np.float64) - cand.astype(np.float64)) ** 2).sum())
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(signal / noise) if signal > 0 else float("-inf")


def relative_error(ref: np.ndarray, cand: np.ndarray) -> float:
    """RMS error of ``cand`` relative to the spread of ``ref`` over the evaluation set (each element
    centred on its mean over samples): 0 is exact, 1 is as far off as the output varies at all. Scale-free
    per output, so a box regression in pixels and logits are judged alike, and (unlike a per-sample cosine)
    not fooled by outputs whose vectors sit near zero."""
    r = ref.reshape(len(ref), -1).astype(np.float64)
    c = cand.reshape(len(cand), -1).astype(np.float64)
    err = float(np.sqrt(np.mean((c - r) ** 2)))
    spread = float(np.sqrt(np.mean((r - r.mean(axis=0)) ** 2)))
    if spread == 0.0:
        return 0.0 if err == 0.0 else 1.0
    return min(err / spread, 1.0)


def decision_agreement(ref: np.ndarray, cand: np.ndarray) -> float:
    """Share of samples whose decision (arg-max over the last axis) is unchanged."""
    return float((ref.argmax(axis=-1) == cand.argmax(axis=-1)).mean())


def is_decision_output(ref: np.ndarray) -> bool:
    """Class scores: [N, C] logits with C >= 5, or rows of probabilities (non-negative, summing to 1). A box
    [N, 4] or a point [N, 2] is [N, k] too, but its arg-max is no decision; few-column logits (a 2-class
    head) are judged by their relative error alone, which a broken head fails as well."""
    if ref.ndim != 2 or ref.shape[1] < 2:
        return False
    probabilities = bool(np.all(ref >= 0) and np.allclose(ref.sum(axis=1), 1.0, atol=1e-3))
    return ref.shape[1] >= 5 or probabilities


def fidelity(ref_outputs: list[np.ndarray], cand_outputs: list[np.ndarray]) -> dict[str, float]:
    """Per output, a measure that suits it, and the worst over outputs (a multi-head model is as good as
    its worst head): ``output_fidelity`` = 1 - relative_error² (R², every output: judged against the output's
    own spread, so a box regression and logits are judged alike), ``decision_agreement`` (class outputs
    only), plus the raw worst ``cosine`` and ``sqnr_db``. Measured on the digits detector (class, box,
    centroid): static INT8 keeps R² 0.98 on its box head (cosine 0.9999); a broken calibration flattens the box
    and centroid heads to R² 0 while their cosine still reads 0.996 — cosine alone would pass it."""
    pairs = list(zip(ref_outputs, cand_outputs))
    out = {
        "cosine": min(cosine(r, c) for r, c in pairs),
        "sqnr_db": min(sqnr_db(r, c) for r, c in pairs),
        # R^2 of the candidate against the float output: the share of the output's variation over the data it keeps
        "output_fidelity": 1.0 - max(relative_error(r, c) for r, c in pairs) ** 2,
    }
    decisions = [decision_agreement(r, c) for r, c in pairs if is_decision_output(r)]
    if decisions:
        out["decision_agreement"] = min(decisions)
    return out


def correct_bits(logits: np.ndarray, labels: np.ndarray) -> str:
    """Which samples a classifier got right, packed as hex: lets the CI gate pair two runs' answers
    per sample (McNemar) instead of comparing two accuracies as if they were independent."""
    return np.packbits(logits.argmax(axis=1) == labels).tobytes().hex()


def unpack_bits(hex_bits: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(hex_bits), dtype=np.uint8))[:n].astype(bool)


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance between two sequences (strings, or decoded symbol tuples)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]
