"""The numbers every layer agrees on: top-1, output fidelity (cosine, SQNR) and per-sample answers.

Pure numpy, no runtime: export parity, the evaluator and the CI gate all compute them the same way.
"""

from __future__ import annotations

import numpy as np

from edgesmith.errors import InputError


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    if logits.ndim != 2 or len(logits) != len(labels):
        raise InputError(f"top1 needs [N, classes] outputs and N labels; got outputs {list(logits.shape)} and {len(labels)} labels",
                         hint="use `metric: fidelity` for non-classifiers, or a user metric")
    if len(labels) and (int(labels.max()) >= logits.shape[1] or int(labels.min()) < 0):
        raise InputError(f"labels run from {int(labels.min())} to {int(labels.max())}, but the model has {logits.shape[1]} classes (0..{logits.shape[1] - 1})",
                         hint="these labels are not this model's classes; check the evaluation data")
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


def fidelity(ref_outputs: list[np.ndarray], cand_outputs: list[np.ndarray]) -> dict[str, float]:
    """Worst cosine and SQNR across outputs (a multi-head model is as good as its worst head)."""
    return {
        "cosine": min(cosine(r, c) for r, c in zip(ref_outputs, cand_outputs)),
        "sqnr_db": min(sqnr_db(r, c) for r, c in zip(ref_outputs, cand_outputs)),
    }


def correct_bits(logits: np.ndarray, labels: np.ndarray) -> str:
    """Which samples a classifier got right, packed as hex: lets the CI gate pair two runs' answers
    per sample (McNemar) instead of comparing two accuracies as if they were independent."""
    return np.packbits(logits.argmax(axis=1) == labels).tobytes().hex()


def unpack_bits(hex_bits: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(hex_bits), dtype=np.uint8))[:n].astype(bool)
