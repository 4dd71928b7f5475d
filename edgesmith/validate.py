"""Validation: metrics of a compressed artifact against the float reference, judged by budgets.

Metrics: ``top1`` (percent, needs labels), fidelity against the float model's outputs
(``cosine``: mean per-sample cosine similarity; ``sqnr_db``: signal-to-quantisation-noise ratio),
a user metric (``package.module:function(outputs, labels) -> float | dict``, higher is better),
latency percentiles, artifact size, peak memory and speed-up over FP32 on the same target.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

from edgesmith.errors import InputError
from edgesmith.profiles.schema import LATENCY_METRICS, Profile


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    if logits.ndim != 2 or len(logits) != len(labels):
        raise InputError(f"top1 needs [N, classes] outputs and N labels; got outputs {list(logits.shape)} and {len(labels)} labels",
                         hint="use `metric: fidelity` for non-classifiers, or a user metric")
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


def correct_bits(logits: np.ndarray, labels: np.ndarray) -> str:
    """Which samples a classifier got right, packed as hex: lets the CI gate pair two runs' answers
    per sample (McNemar) instead of comparing two accuracies as if they were independent."""
    return np.packbits(logits.argmax(axis=1) == labels).tobytes().hex()


def unpack_bits(hex_bits: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(hex_bits), dtype=np.uint8))[:n].astype(bool)


def run_dataset(session: Any, dataset: Any) -> list[np.ndarray]:
    """All outputs of ``session`` over ``dataset``, concatenated per output."""
    per_output: list[list[np.ndarray]] = []
    for batch in dataset.batches:
        outs = session.run({n: batch.inputs[n] for n in session.input_names})
        if not per_output:
            per_output = [[] for _ in outs]
        for i, o in enumerate(outs):
            per_output[i].append(np.asarray(o))
    return [np.concatenate(chunks) for chunks in per_output]


def task_metrics(outputs: list[np.ndarray], labels: np.ndarray | None, metric: str,
                 user_fn: Callable | None = None) -> dict[str, float]:
    if metric == "top1":
        if labels is None:
            raise InputError("metric top1 needs labels in the evaluation data", hint="add labels (npz key `labels`) or use `metric: fidelity`")
        return {"top1": top1(outputs[0], labels)}
    if metric == "fidelity":
        return {}
    value = user_fn(outputs if len(outputs) > 1 else outputs[0], labels)
    if isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items()}
    return {metric.rpartition(":")[2]: float(value)}


def fidelity(ref_outputs: list[np.ndarray], cand_outputs: list[np.ndarray]) -> dict[str, float]:
    """Worst cosine and SQNR across outputs (a multi-head model is as good as its worst head)."""
    return {
        "cosine": min(cosine(r, c) for r, c in zip(ref_outputs, cand_outputs)),
        "sqnr_db": min(sqnr_db(r, c) for r, c in zip(ref_outputs, cand_outputs)),
    }


def record_latency(metrics: dict[str, Any], reference: dict[str, Any], batch: int, cand: Any, base: Any,
                   latency: dict[str, dict], first_batch: bool) -> None:
    """File one batch size's interleaved measurement (runtime.bench.BenchStats of candidate and FP32)
    under the metric names budgets use (``latency_p90_ms@1``, ``speedup_vs_fp32@1``, ...)."""
    latency["compressed"][batch], latency["fp32"][batch] = cand.as_dict(), base.as_dict()
    for src, dst in ((cand, metrics), (base, reference)):
        for p in ("p50", "p90", "p95", "p99"):
            dst[f"latency_{p}_ms@{batch}"] = getattr(src, f"{p}_ms")
        dst[f"latency_mean_ms@{batch}"] = src.mean_ms
    metrics[f"speedup_vs_fp32@{batch}"] = base.p50_ms / cand.p50_ms
    reference[f"speedup_vs_fp32@{batch}"] = 1.0
    if first_batch:
        metrics["peak_memory_mb"], reference["peak_memory_mb"] = cand.peak_rss_mb, base.peak_rss_mb


@dataclass
class Verdict:
    metric: str
    value: float | None
    reference: float | None
    goal: str
    budget: float
    status: str  # pass | fail | n/a
    detail: str = ""
    batch: int | None = None
    estimate: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def host_arch() -> str:
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


def judge(profile: Profile, metrics: dict[str, Any], reference: dict[str, Any]) -> list[Verdict]:
    """One verdict per budget. ``metrics``/``reference`` map metric name -> value; latency and
    speed-up metrics are keyed ``name@batch``."""
    verdicts = []
    on_target = host_arch() == profile.hardware.arch
    for g in profile.budgets:
        key = g.metric
        if g.metric in LATENCY_METRICS + ("speedup_vs_fp32",):
            key = f"{g.metric}@{g.batch or profile.batch_sizes[0]}"
        value, ref = metrics.get(key), reference.get(key)
        v = Verdict(g.metric, value, ref, g.goal, g.value, "n/a", batch=g.batch, estimate=profile.estimated)
        if key.startswith(LATENCY_METRICS + ("speedup_vs_fp32",)):
            v.batch = g.batch or profile.batch_sizes[0]
            if not on_target:
                v.detail = f"measured on {host_arch()}, target is {profile.hardware.arch}: not judged"
                verdicts.append(v)
                continue
        if value is None:
            v.detail = "not computed in this run"
        elif g.goal in ("max-degradation", "max-relative-degradation"):
            if ref is None:
                v.detail = "no float reference to compare with"
            else:
                drop = ref - value
                if g.goal == "max-relative-degradation":
                    drop = 100.0 * drop / abs(ref) if ref else 0.0
                v.status = "pass" if drop <= g.value + 1e-9 else "fail"
                unit = "%" if g.goal == "max-relative-degradation" else " pt"
                v.detail = f"drop {drop:.3g}{unit}"
        else:
            ok = value >= g.value if g.goal == "min" else value <= g.value
            v.status = "pass" if ok else "fail"
            v.detail = f"{'>=' if g.goal == 'min' else '<='} {g.value:g}"
        verdicts.append(v)
    return verdicts


def overall(verdicts: Sequence[Verdict]) -> str:
    return "fail" if any(v.status == "fail" for v in verdicts) else "pass"
