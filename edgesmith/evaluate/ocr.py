"""Task measures for OCR models: the recognizer's character error rate and string agreement, the detector's
box F1 — numpy only, so they run on any runtime's outputs.

- ``greedy_ctc``: EasyOCR's greedy decode (arg-max per column, repeats merged, blanks dropped).
- ``cer``: edit distance over the reference's length, summed over lines (100 x: percent).
- ``cer_metric``: a recipe metric (``metric: edgesmith.evaluate.ocr:cer_metric``) on labelled text lines
  (``edgesmith.data.text_render:text_lines``); returns ``{"cer": ..., "accuracy": ...}``, where accuracy is
  100 - CER so that a ``max-degradation`` budget in points reads as "CER within N points".
- ``boxes_from_maps``/``box_f1``: CRAFT's post-processing reduced to its core (region score above a
  threshold, joined by the affinity map, connected components, one box each) and F1 at IoU 0.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgesmith.data.text_render import CHARACTERS, decode_labels
from edgesmith.errors import InputError
from edgesmith.metrics import edit_distance


def greedy_ctc(logits: np.ndarray, characters: str | None = None) -> list[str]:
    """[N, T, C] CTC logits -> N strings (class 0 is the blank; class i is characters[i - 1])."""
    if characters is None:
        characters = CHARACTERS
    best = np.asarray(logits).argmax(axis=-1)
    out = []
    for row in best:
        keep = np.concatenate([[True], row[1:] != row[:-1]]) & (row > 0)
        out.append("".join(characters[i - 1] for i in row[keep] if i - 1 < len(characters)))
    return out


def cer(predicted: list[str], truth: list[str]) -> float:
    """Character error rate in percent: total edits over total reference characters."""
    edits = sum(edit_distance(p, t) for p, t in zip(predicted, truth))
    return 100.0 * edits / max(1, sum(len(t) for t in truth))


def string_agreement(a: list[str], b: list[str]) -> float:
    """Percent of lines two models read identically (a compressed model against the original)."""
    return 100.0 * sum(x == y for x, y in zip(a, b)) / max(1, len(a))


def cer_metric(outputs: Any, labels: Any) -> dict[str, float]:
    logits = outputs[0] if isinstance(outputs, list) else outputs
    if labels is None or np.asarray(labels).ndim != 2:
        raise InputError("the CER metric needs each line's text as labels [N, L]", hint="use edgesmith.data.text_render:text_lines as evaluation data")
    if np.asarray(logits).ndim != 3:
        raise InputError(f"the CER metric needs [N, T, classes] CTC logits, got shape {list(np.shape(logits))}", hint="it measures a CTC text recognizer")
    value = cer(greedy_ctc(logits), [decode_labels(row) for row in np.asarray(labels)])
    return {"cer": round(value, 3), "accuracy": round(100.0 - value, 3)}


def boxes_from_maps(maps: np.ndarray, text_threshold: float = 0.7, link_threshold: float = 0.4, low_text: float = 0.4, scale: float = 2.0) -> np.ndarray:
    """One page's [H, W, 2] region/affinity maps -> word boxes [K, 4] in input pixels (CRAFT's getDetBoxes, axis-aligned)."""
    from scipy import ndimage

    region, link = maps[..., 0], maps[..., 1]
    mask = (region > low_text) | (link > link_threshold)
    labels, n = ndimage.label(mask)
    boxes = []
    for k, sl in enumerate(ndimage.find_objects(labels), 1):
        if sl is None:
            continue
        part = labels[sl] == k
        if part.sum() < 10 or region[sl][part].max() < text_threshold:
            continue
        boxes.append([sl[1].start * scale, sl[0].start * scale, sl[1].stop * scale, sl[0].stop * scale])
    return np.array(boxes, np.float32).reshape(-1, 4)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x0, y0 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x1, y1 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def box_f1(found: list[np.ndarray], truth: list[np.ndarray], iou: float = 0.5) -> float:
    """F1 (percent) of found boxes against true ones, greedy one-to-one matching at IoU >= ``iou``, over all pages."""
    tp = fp = fn = 0
    for f, t in zip(found, truth):
        if len(f) == 0 or len(t) == 0:
            fp, fn = fp + len(f), fn + len(t)
            continue
        m = _iou(f, t)
        hits = 0
        while m.size and m.max() >= iou:
            i, j = np.unravel_index(m.argmax(), m.shape)
            hits += 1
            m[i, :], m[:, j] = -1, -1
        tp, fp, fn = tp + hits, fp + len(f) - hits, fn + len(t) - hits
    return 100.0 * 2 * tp / max(1, 2 * tp + fp + fn)


def _unpad(boxes: np.ndarray) -> np.ndarray:
    return boxes[(boxes >= 0).all(axis=1)]


def box_f1_metric(outputs: Any, labels: Any) -> dict[str, float]:
    """A recipe metric for a CRAFT-style detector ([N, H, W, 2] maps at half the input's resolution): box F1 (percent,
    IoU 0.5) against labels [N, K, 4] of true boxes, padded with -1 rows; labels [N, 2, K, 4] hold a second set (e.g.
    the original model's boxes), scored as ``box_f1_vs_original``."""
    maps = outputs[0] if isinstance(outputs, list) else outputs
    lab = None if labels is None else np.asarray(labels)
    if lab is None or lab.ndim not in (3, 4) or lab.shape[-1] != 4:
        raise InputError(
            "the box F1 metric needs boxes as labels [N, K, 4] (or [N, 2, K, 4]), padded with -1", hint="see edgesmith.data.text_render:page_boxes"
        )
    if np.asarray(maps).ndim != 4 or np.asarray(maps).shape[-1] != 2:
        raise InputError(f"the box F1 metric needs [N, H, W, 2] region/affinity maps, got {list(np.shape(maps))}", hint="it measures a CRAFT-style detector")
    found = [boxes_from_maps(m) for m in np.asarray(maps)]
    sets = [lab] if lab.ndim == 3 else [lab[:, 0], lab[:, 1]]
    out = {"box_f1": round(box_f1(found, [_unpad(b) for b in sets[0]]), 3)}
    if len(sets) > 1:
        out["box_f1_vs_original"] = round(box_f1(found, [_unpad(b) for b in sets[1]]), 3)
    return out
