"""Entropy (KL-divergence) calibration with streamed histograms, for ``ptq_int8 calibration: entropy``.

ONNX Runtime's own entropy calibrator, as ``quantize_static`` calls it, builds 128-bin histograms and
searches thresholds among 128 quantized bins: one candidate, the full range — its scales came out identical
to min-max on a pretrained image classifier — and it keeps every batch's activations before histogramming
(16.8 GB for 300 images at 224x224). Here, per activation tensor ORT would quantize:

1. one pass keeps each tensor's running min and max;
2. a second pass fills a ``BINS``-bin histogram of ``|x|`` over ``[0, max|x|]`` — one batch's outputs in
   memory at a time, whatever the data size;
3. the threshold minimises KL(P || Q) (the zero bin, a ReLU's spike, flattened first) between the histogram clipped at the candidate (its tail folded into
   the last bin) and that histogram quantized to the levels the tensor gets (TensorRT's method, Migacz 2017:
   256 for a tensor that is never negative, 128 per side for a signed one);
4. the range is the observed one clipped to ``[-threshold, threshold]``; the graph's outputs keep their
   observed range: they are the answer itself, and clipping them (a classifier's logits) bends it — on the
   digits CNN a clipped output layer took the outputs' cosine to the float model from 0.998 to 0.981.

The ranges go to ``quantize_static`` as its calibration cache, so ORT quantizes with them and runs no
calibration of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

BINS = 2048
QUANT_BINS = 128
STEP = 16  # candidate thresholds every STEP bins


def kl_threshold(hist: np.ndarray, edges: np.ndarray, quant_bins: int = QUANT_BINS, step: int = STEP) -> float:
    """The clipping threshold of ``|x|`` whose 8-bit quantization loses the least information (min KL)."""
    hist = hist.astype(np.float64)
    # NOTE: the zero bin is flattened to its neighbour's height, as NVIDIA's pytorch-quantization does: after a ReLU
    # half of the values are exactly 0, and that spike dominated the divergence — it clipped the digits CNN's second
    # ReLU at a quarter of its range (5% of the values), which took the outputs' cosine to the float model to 0.981
    if len(hist) > 1:
        hist[0] = hist[1]
    if hist.sum() == 0 or len(hist) <= quant_bins:
        return float(edges[-1])
    best, best_kl = len(hist), np.inf
    for i in range(quant_bins, len(hist) + 1, step):
        p = hist[:i].copy()
        p[-1] += hist[i:].sum()  # the clipped tail lands on the threshold
        chunks = np.array_split(hist[:i], quant_bins)
        q = np.concatenate([np.where(c > 0, c.sum() / max(int((c > 0).sum()), 1), 0.0) for c in chunks])
        mask = p > 0
        if (q[mask] == 0).any():
            continue
        kl = float(np.sum(p[mask] / p.sum() * np.log((p[mask] / p.sum()) / (q[mask] / q.sum()))))
        if kl < best_kl:
            best, best_kl = i, kl
    return float(edges[best])


def entropy_ranges(calibrator: Any, make_reader: Any, keep: frozenset[str] = frozenset()) -> dict[str, tuple[float, float]]:
    """``{tensor: (lowest, highest)}`` for the tensors ``calibrator`` (ORT's histogram calibrator, whose
    session outputs every tensor to calibrate) exposes; ``make_reader()`` gives a fresh data reader per pass;
    the tensors in ``keep`` (the graph's outputs) keep their observed range."""
    session = calibrator.infer_session
    names = [o.name for o in session.get_outputs()]
    wanted = set(calibrator.tensors_to_calibrate) if getattr(calibrator, "tensors_to_calibrate", None) else set(names)
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for outs in _passes(session, names, wanted, make_reader()):
        for name, arr in outs.items():
            lo[name] = min(lo.get(name, np.inf), float(np.min(arr)))
            hi[name] = max(hi.get(name, -np.inf), float(np.max(arr)))
    hists = {n: np.zeros(BINS, np.int64) for n in lo}
    for outs in _passes(session, names, wanted, make_reader()):
        for name, arr in outs.items():
            top = max(abs(lo[name]), abs(hi[name]))
            if top > 0:
                hists[name] += np.histogram(np.abs(arr), bins=BINS, range=(0.0, top))[0]
    ranges = {}
    for name, hist in hists.items():
        top = max(abs(lo[name]), abs(hi[name]))
        # NOTE: a tensor that is never negative spends all 256 levels on [0, thr]; a signed one 128 per side
        levels = 2 * QUANT_BINS if lo[name] >= 0 else QUANT_BINS
        thr = top if name in keep else kl_threshold(hist, np.linspace(0.0, top, BINS + 1), levels) if top > 0 else 0.0
        ranges[name] = (max(lo[name], -thr), min(hi[name], thr))
    return ranges


def _passes(session: Any, names: list[str], wanted: set[str], reader: Any) -> Any:
    while (inputs := reader.get_next()) is not None:
        values = session.run(None, inputs)
        yield {n: np.asarray(v, dtype=np.float32) for n, v in zip(names, values) if n in wanted and np.asarray(v).dtype.kind == "f" and np.asarray(v).size}


def write_cache(ranges: dict[str, tuple[float, float]], path: Path) -> Path:
    """The ranges as ONNX Runtime's calibration cache (``quantize_static(calibration_cache_path=...)``)."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData, save_tensors_data

    data = TensorsData(CalibrationMethod.Entropy, {n: TensorData(lowest=np.float32(a), highest=np.float32(b)) for n, (a, b) in ranges.items()})
    save_tensors_data(data, path)
    return path
