"""What a run reads and leaves of its data: the recipe's calibration and evaluation sets loaded once per
command (with the model's tokenizer and class names for text and class folders), their record for the
manifest, and the bounded sample of evaluation data a run's device bundle carries."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.data.sources import load_dataset
from edgesmith.errors import ConfigError, InputError
from edgesmith.hf import class_names
from edgesmith.model_io import hf_folder


def load_data(recipe: Any, specs: list, base_dir: Path, needs_calibration: bool, loaded: Any = None, reporter: Any = None) -> tuple[Any, Any]:
    """The recipe's calibration and evaluation sets, checked against the inputs (loaded once per command).
    ``loaded`` (the model) lends text data its tokenizer and class folders its class names."""
    tokenizer_dir = getattr(loaded, "tokenizer_dir", None)
    model_labels = getattr(loaded, "labels", None)
    if loaded is None:
        folder = hf_folder(recipe.model.source, base_dir)
        tokenizer_dir = folder
        model_labels = None if folder is None else class_names(folder)

    def load(src: Any, role: str) -> Any:
        return load_dataset(
            src.source,
            specs,
            role=role,
            split=src.split,
            samples=src.samples,
            batch_size=src.batch_size,
            base_dir=base_dir,
            cfg=src,
            tokenizer_dir=tokenizer_dir,
            model_labels=model_labels,
            reporter=reporter,
        )

    require_calibration(needs_calibration, recipe.data.calibration is not None)
    calib = load(recipe.data.calibration, "calibration") if (needs_calibration and recipe.data.calibration) else None
    evaluation = load(recipe.data.evaluation, "evaluation") if recipe.data.evaluation else None
    if evaluation is not None:
        require_labels(recipe.metric, evaluation.name, evaluation.has_labels)
    return calib, evaluation


def require_calibration(needed: bool, given: bool) -> None:
    """The refusal a run and its dry run share: a pass that calibrates, and no calibration data."""
    if needed and not given:
        raise ConfigError("a pass needs calibration data but the recipe has none", hint="add `data: {calibration: {source: ...}}` or --data")


def require_labels(metric: str, name: str, labelled: bool | None) -> None:
    """The refusal a run and its dry run share: top1 on evaluation data without labels (None: not known yet)."""
    if metric == "top1" and labelled is False:
        raise InputError(
            f"metric top1 needs labels, and the evaluation data {name} has none",
            hint="label the data (class sub-folders, a label column, npz key `labels`), or set `metric: fidelity` (--metric fidelity) to compare against the float model",
        )


def content_digest(ds: Any, labels: bool = True) -> str:
    """SHA-256 over a data set's decoded inputs and (``labels``) labels, in order: the same data, the same digest."""
    h = hashlib.sha256()
    for b in ds.batches:
        for name in sorted(b.inputs):
            arr = np.ascontiguousarray(b.inputs[name])
            h.update(f"{name}{arr.dtype}{arr.shape}".encode())
            h.update(arr.tobytes())
        if labels and b.labels is not None:
            lab = np.asarray(b.labels)
            h.update(f"labels{lab.dtype}{lab.shape}".encode())
            h.update(repr(lab.tolist()).encode() if lab.dtype.kind == "O" else np.ascontiguousarray(lab).tobytes())  # NOTE: objects hash by value
    return h.hexdigest()


def data_record(ds: Any, digest: bool = False) -> dict[str, Any]:
    """A data set as the manifest records it: name, count, notes, what was skipped, whether it streamed
    (and with ``digest``, its content hash: what the CI gate freezes)."""
    rec: dict[str, Any] = {"name": ds.name, "samples": ds.num_samples}
    if digest:
        rec["sha256"] = content_digest(ds)
    if ds.notes:
        rec["notes"] = list(ds.notes)
    if ds.skipped:
        rec["skipped"] = dict(ds.skipped)
    if ds.streamed:
        rec["streamed"] = True
    return rec


BUNDLE_MAX_BYTES = 64 << 20  # the device bundle carries at most this much evaluation data


def write_eval_bundle(evaluation: Any, path: Callable[[str], Path]) -> int:
    """The device bundle: a bounded sample of the evaluation data travels with the artifacts (see
    edgesmith.device.bundle): whole batches, at most BUNDLE_MAX_BYTES. Returns how many samples it holds."""

    first = evaluation.batches[0] if evaluation.batches else None
    batch = first.size if first is not None else 32
    per_sample = max(1, sum(a.nbytes for a in first.inputs.values()) // max(batch, 1)) if first is not None else 1
    n = evaluation.num_samples
    k = min(n, max(batch, (BUNDLE_MAX_BYTES // per_sample) // batch * batch))
    arrays = {f"input:{k_}": v for k_, v in evaluation.first(k).items()}
    labels = evaluation.labels()
    if labels is not None:
        arrays["labels"] = labels[:k]
    arrays["batch_size"] = np.array(batch)
    np.savez(path("bundle/eval_data.npz"), **arrays)
    return k
