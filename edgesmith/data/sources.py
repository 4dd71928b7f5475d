"""Load calibration/evaluation data into batches and check it before any work is done.

Sources: ``digits`` and ``digits32`` (built in, 8x8 or upsampled to 32x32), a ``.npz`` file (one array per input name, or ``x``/``inputs``;
labels under ``labels`` or ``y``), or ``package.module:function`` returning an iterable of batches
(each an array, a ``{name: array}`` dict, or an ``(inputs, labels)`` pair).
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.data.digits import load_digits_split
from edgesmith.data.records import is_record_source
from edgesmith.environment import physical_memory
from edgesmith.errors import ConfigError, InputError
from edgesmith.memory import is_memory_ref
from edgesmith.model_io import import_object
from edgesmith.schema import fixed_batch

LABEL_KEYS = ("labels", "y", "label", "target", "targets")


@dataclass
class Batch:
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])


@dataclass
class Dataset:
    """Batches: a list held in memory, or (``streamed``) a re-iterable sequence read from the files on
    each pass (``edgesmith.data.stream``), whose count and labels are known without decoding."""

    name: str
    batches: Any  # list[Batch] or stream.StreamedBatches
    known_samples: int | None = None
    known_labels: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    streamed: bool = False
    skipped: dict[str, int] = field(default_factory=dict)
    classes: list[str] | None = None
    bundle_samples: int | None = None  # how many of them a run's device bundle carries

    @property
    def num_samples(self) -> int:
        return self.known_samples if self.known_samples is not None else sum(b.size for b in self.batches)

    @property
    def has_labels(self) -> bool:
        if self.streamed:
            return self.known_labels is not None
        return bool(self.batches) and all(b.labels is not None for b in self.batches)

    def take(self, n: int) -> Dataset:
        if n >= self.num_samples:
            return self
        out, left = [], n
        for b in self.batches:
            if left <= 0:
                break
            if b.size <= left:
                out.append(b)
            else:
                out.append(Batch({k: v[:left] for k, v in b.inputs.items()}, None if b.labels is None else b.labels[:left]))
            left -= b.size
        return Dataset(self.name, out, notes=self.notes, classes=self.classes)

    def uniform_batches(self) -> tuple[Dataset, int]:
        """Re-batch to one batch size (the first batch's); returns the set and how many samples were left out.

        With fewer samples than one batch, everything goes in as batches of one.
        """
        if not self.batches:
            return self, 0
        size = self.batches[0].size
        if all(b.size == size for b in self.batches):
            return self, 0
        inputs = {k: np.concatenate([b.inputs[k] for b in self.batches]) for k in self.batches[0].inputs}
        labels = self.labels()
        n = self.num_samples
        if n < size:
            size = 1
        keep = n - n % size
        trimmed = {k: v[:keep] for k, v in inputs.items()}
        return Dataset(self.name, split_batches(trimmed, None if labels is None else labels[:keep], size)), n - keep

    def batched_as(self, size: int) -> Dataset:
        """The same samples in batches of exactly ``size`` (a model with a fixed batch); a remainder that cannot
        fill one is left out and said in the notes."""
        if all(b.size == size for b in self.batches):
            return self
        inputs = {k: np.concatenate([b.inputs[k] for b in self.batches]) for k in self.batches[0].inputs}
        labels = self.labels()
        n = self.num_samples
        keep = n - n % size
        if keep == 0:
            raise InputError(f"{self.name} has {n} sample(s); the model takes batches of exactly {size}", hint=f"give at least {size} samples")
        notes = list(self.notes) + ([f"{self.name}: the model takes batches of exactly {size}: the last {n - keep} sample(s) left out"] if keep < n else [])
        trimmed = {k: v[:keep] for k, v in inputs.items()}
        return Dataset(self.name, split_batches(trimmed, None if labels is None else labels[:keep], size), notes=notes, classes=self.classes)

    def labels(self) -> np.ndarray | None:
        if self.streamed:
            return self.known_labels
        return np.concatenate([b.labels for b in self.batches]) if self.has_labels else None

    def first(self, n: int) -> dict[str, np.ndarray]:
        """The first ``n`` samples of every input, as one feed."""
        part = self.take(n).batches
        return {k: np.concatenate([b.inputs[k] for b in part]) for k in part[0].inputs}


def split_batches(inputs: dict[str, np.ndarray], labels: np.ndarray | None, batch_size: int) -> list[Batch]:
    """Arrays of one first dimension (the samples) cut into batches; every way they cannot be is one clear error."""
    if not inputs:
        raise InputError("the data holds no input arrays", hint="give at least one array of samples (first dimension: the samples)")
    shapes = {k: np.shape(v) for k, v in inputs.items()}
    if any(len(sh) == 0 for sh in shapes.values()):
        raise InputError(f"an input array is a single number (shapes {shapes}), not samples", hint="the first dimension of each array is the samples")
    n = shapes[next(iter(shapes))][0]
    if any(sh[0] != n for sh in shapes.values()):
        raise InputError(
            f"the input arrays hold different numbers of samples ({ {k: sh[0] for k, sh in shapes.items()} })", hint="one row per sample in every array"
        )
    if n == 0:
        raise InputError("the data holds no samples (its arrays have 0 rows)", hint="give at least one sample")
    if labels is not None and (np.ndim(labels) == 0 or len(labels) != n):
        raise InputError(f"{n} samples and labels of shape {list(np.shape(labels))}", hint="give one label per sample")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}", hint="a positive batch size")
    return [
        Batch({k: v[i : i + batch_size] for k, v in inputs.items()}, None if labels is None else labels[i : i + batch_size]) for i in range(0, n, batch_size)
    ]


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _from_npz(path: Path, names: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    if not path.is_file():
        raise InputError(f"data file not found: {path}", hint="give an existing .npz file, `digits`, or module:function")
    try:
        _check_npz_fits(path)
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read {path} as .npz ({type(exc).__name__}: {exc})", hint="write it with numpy.savez; object arrays are refused") from exc
    labels = next((arrays.pop(k) for k in LABEL_KEYS if k in arrays), None)
    if all(n in arrays for n in names):
        return {n: arrays[n] for n in names}, labels
    if len(names) == 1 and len(arrays) == 1:
        return {names[0]: next(iter(arrays.values()))}, labels
    for alias in ("x", "inputs", "input"):
        if len(names) == 1 and alias in arrays:
            return {names[0]: arrays[alias]}, labels
    raise InputError(
        f"{path} has arrays {sorted(arrays)}; the model's inputs are {list(names)}",
        hint="name each array after a model input (np.savez(f, **{name: array}, labels=y))",
    )


def _check_npz_fits(path: Path) -> None:
    """The arrays' sizes from their headers, before numpy allocates them: a 20 MB compressed .npz can unpack to
    tens of GB (an npz bomb, or simply too much data), which the kernel's OOM killer answered with SIGKILL."""
    total = 0
    with zipfile.ZipFile(path) as z:
        for member in z.namelist():
            if not member.endswith(".npy"):
                continue
            with z.open(member) as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)
                total += math.prod(shape) * dtype.itemsize
    memory = physical_memory()
    if memory is not None and total > memory // 2:
        raise InputError(
            f"{path.name} unpacks to {total / 2**30:.1f} GiB of arrays, more than half of this machine's {memory / 2**30:.1f} GiB",
            hint="give fewer samples in the .npz, or a source that streams (an image folder, CSV/JSONL/parquet)",
        )


def _from_callable(ref: str, names: Sequence[str]) -> list[Batch]:

    fn = import_object(ref, "data function")
    try:
        return _batches_of(fn() if callable(fn) else fn, ref, names)
    except (InputError, KeyboardInterrupt):
        raise
    except Exception as exc:  # NOTE: the user's code failed; that is bad input, not an edgesmith defect
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        who = "the data given to the Python API" if is_memory_ref(ref) else f"data function {ref}"
        raise InputError(f"{who} raised {type(exc).__name__}: {first}", hint="run it on its own to debug it; EDGESMITH_DEBUG=1 shows the traceback") from exc


def _batches_of(items: Any, ref: str, names: Sequence[str]) -> list[Batch]:
    batches: list[Batch] = []
    for item in items:
        labels = None
        if isinstance(item, (tuple, list)) and len(item) == 2:
            item, labels = item
            labels = _to_numpy(labels)
        if isinstance(item, dict):
            inputs = {k: _to_numpy(v) for k, v in item.items()}
        elif len(names) == 1:
            inputs = {names[0]: _to_numpy(item)}
        else:
            raise InputError(f"{ref} yielded a bare array but the model has inputs {list(names)}", hint="yield {name: array} dicts")
        batches.append(Batch(inputs, labels))
    if not batches:
        who = "the data given to the Python API" if is_memory_ref(ref) else ref
        raise InputError(f"{who} yielded no batches", hint="give a non-empty iterable of batches")
    return batches


def load_dataset(
    source: str,
    input_specs: Sequence[Any],
    *,
    role: str,
    split: str | None = None,
    samples: int | None = None,
    batch_size: int = 32,
    base_dir: Path | None = None,
    cfg: Any = None,
    tokenizer_dir: Path | None = None,
    model_labels: dict[str, int] | None = None,
    reporter: Any = None,
) -> Dataset:
    """Load and check one data set. ``input_specs`` are recipe InputSpec objects (name, shape, dtype); ``cfg``
    the recipe's DataSource (preprocess, fields, labels, seed, skip) for folders, text and tables."""

    names = [s.name for s in input_specs]
    fixed = fixed_batch(input_specs)
    if fixed is not None:
        batch_size = fixed  # a model exported with a fixed batch takes exactly that many samples per call
    if ":" not in source and not source.endswith(".npz") and source not in ("digits", "digits32") and is_record_source(source, base_dir):
        from edgesmith.data.stream import load_records

        return load_records(
            source,
            input_specs,
            role=role,
            cfg=cfg,
            base_dir=base_dir,
            batch_size=batch_size,
            tokenizer_dir=tokenizer_dir,
            model_labels=model_labels,
            reporter=reporter,
        )
    if getattr(cfg, "split_at", None):
        raise ConfigError(
            f"{source}: a calibration/evaluation split of one source applies to folders, text and table files",
            hint="give --eval-data separately for this source",
        )
    if source in ("digits", "digits32"):
        if len(names) != 1:
            raise ConfigError(f"the digits data feeds one input, the model has {names}", hint="use a .npz file or a data function")
        x, y = load_digits_split(split or ("train" if role == "calibration" else "test"), 32 if source == "digits32" else 8)
        batches = split_batches({names[0]: x}, y, batch_size)
    elif source.endswith(".npz"):
        path = Path(source)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        inputs, labels = _from_npz(path, names)
        batches = split_batches(inputs, labels, batch_size)
    elif ":" in source:
        batches = _from_callable(source, names)
    else:
        p = Path(source) if base_dir is None or Path(source).is_absolute() else base_dir / source
        if not p.exists() and ("/" in source or "." in Path(source).name):
            raise InputError(f"data not found: {p}", hint="give an existing image folder, text/JSONL/CSV/parquet/arrow file, datasets folder or .npz")
        raise ConfigError(
            f"unknown data source {source!r}",
            hint="use an image folder, a .txt/.jsonl/.csv/.parquet/.arrow file, a saved datasets folder, "
            "a .npz file, package.module:function, `digits` (8x8) or `digits32`",
        )
    ds = Dataset(f"{source}{f'[{split}]' if split else ''}", batches)
    if samples is not None:
        ds = ds.take(samples)
    if fixed is not None:
        ds = ds.batched_as(fixed)
    check_dataset(ds, input_specs, role)
    return ds


def check_dataset(ds: Dataset, input_specs: Sequence[Any], role: str) -> None:
    """Shapes against the input spec, dtypes cast, and no NaN/Inf (counted and located)."""
    if not ds.streamed and not ds.batches:
        raise InputError(f"the {role} data holds no samples", hint="give at least one sample")
    for spec in input_specs:
        want = list(spec.shape)
        for i, b in enumerate(ds.batches):
            if spec.name not in b.inputs:
                raise InputError(f"{role} batch {i} lacks input {spec.name!r} (has {sorted(b.inputs)})", hint="name arrays after the model's inputs")
            arr = b.inputs[spec.name]
            fixed = [(d, w) for d, w in zip(arr.shape[1:], want[1:]) if isinstance(w, int) and w > 0]
            if arr.ndim != len(want) or any(d != w for d, w in fixed):
                if ds.name in ("digits", "digits32"):  # NOTE: the demo's data, a recipe's default when it names none
                    raise InputError(
                        f"the {role} data is the bundled digits ({ds.name}: {list(arr.shape[1:])} per sample, the default when no data "
                        f"is given), which does not fit input {spec.name!r} {want}",
                        hint=f"give your own data: `-d FOLDER` on the command line, or `data: {{{role}: {{source: ...}}}}` in the recipe",
                    )
                raise InputError(
                    f"{role} data for input {spec.name!r} has shape {list(arr.shape)}, the input spec says {want}",
                    hint="reshape the data or fix `inputs:` in the recipe (the first dimension is the batch)",
                )
            if arr.dtype.kind not in "biuf":  # complex, strings, objects: a cast would lose or invent data
                raise InputError(
                    f"{role} data for input {spec.name!r} is {arr.dtype} ({'complex' if arr.dtype.kind == 'c' else 'not numeric'})",
                    hint=f"give real numbers castable to {spec.dtype}",
                )
            if arr.dtype != np.dtype(spec.dtype):
                _check_castable(arr, spec, role)
                b.inputs[spec.name] = arr.astype(spec.dtype)
    _check_labels(ds, role)
    _check_finite(ds, role)


def _check_castable(arr: np.ndarray, spec: Any, role: str) -> None:
    """Data cast to an integer input (token ids, indices) keeps its values: fractions, NaN/inf (which became
    -2**63 before the NaN check could see them) and values past the type's range are refused, not truncated."""
    target = np.dtype(spec.dtype)
    if target.kind not in "iu" or not arr.size:
        return
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise InputError(
                f"{role} data for input {spec.name!r} ({spec.dtype}) holds {arr[bad].flat[0].item()!r}, not a whole number ({int(bad.sum())} such)",
                hint="give whole numbers (token ids, indices); a cast would truncate them",
            )
    info = np.iinfo(target)
    low, high = arr.min(), arr.max()
    if low < info.min or high > info.max:
        raise InputError(
            f"{role} data for input {spec.name!r} spans [{low.item()}, {high.item()}], beyond {spec.dtype}'s range", hint=f"give values {spec.dtype} can hold"
        )


def _check_labels(ds: Dataset, role: str) -> None:
    """Labels are numbers, one row per sample: an integer class index (not a string, not negative), or an array
    per sample for a metric that reads such labels (a line's characters, a page's boxes; top1 refuses those)."""
    for i, b in enumerate(ds.batches):
        if b.labels is None:
            continue
        y = np.asarray(b.labels)
        if y.dtype.kind not in "biuf":
            raise InputError(f"{role} labels are {y.dtype}, not integer class indices", hint="map class names to indices 0..C-1 before saving")
        if y.ndim == 0 or len(y) != b.size:
            raise InputError(f"{role} batch {i} has {b.size} samples and labels of shape {list(y.shape)}", hint="give one label per sample")
        if y.ndim > 1:
            if not np.all(np.isfinite(y)):
                raise InputError(f"{role} labels of batch {i} are not all finite", hint="labels are numbers")
            continue
        if len(y) != b.size:
            raise InputError(f"{role} batch {i} has {b.size} samples and {len(y)} labels", hint="give one label per sample")
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise InputError(f"{role} labels of batch {i} are not whole numbers", hint="labels are class indices 0..C-1")
            y = y.astype(np.int64)
        if y.size and y.min() < 0:
            raise InputError(f"{role} labels include {int(y.min())}: class indices start at 0", hint="labels are class indices 0..C-1")
        b.labels = y.astype(np.int64, copy=False)


def _check_finite(ds: Dataset, role: str) -> None:
    for name in ds.batches[0].inputs if ds.batches else []:
        nan = inf = 0
        first: tuple[int, list[int]] | None = None
        offset = 0
        for b in ds.batches:
            arr = b.inputs[name]
            if np.issubdtype(arr.dtype, np.floating):
                bad = ~np.isfinite(arr)
                if bad.any():
                    nan += int(np.isnan(arr).sum())
                    inf += int(np.isinf(arr).sum())
                    if first is None:
                        idx = np.unravel_index(int(np.argmax(bad)), arr.shape)
                        first = (offset + int(idx[0]), list(int(i) for i in idx[1:]))
            offset += b.size
        if first is not None:  # a NaN or Inf was found
            raise InputError(
                f"{role} data for input {name!r} contains {nan} NaN and {inf} Inf value(s); first at sample {first[0]}, position {first[1]}",
                hint="clean or drop those samples; quantization ranges and metrics would be meaningless with them",
            )
