"""Records -> checked batches, in bounded memory.

A record source (``edgesmith.data.records``) is read once with progress: each record is encoded
(images decoded and preprocessed, text tokenized, table columns stacked), every batch is checked
against the input specs, and what could not be used is counted with its reason. A set that fits in
``EDGESMITH_DATA_MEMORY_MB`` (default 512) is kept in memory; a larger one is streamed: its batches are
re-read from the files each time a stage iterates them, so memory does not grow with the folder.

One source serves calibration and evaluation without overlap: its records are shuffled with a seed
and ``skip``/``samples`` cut disjoint slices of that order (``--calibration-samples``/``--eval-samples``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith._lazy import require
from edgesmith.data.preprocess import ImageEncoder, image_inputs, preprocess_config
from edgesmith.data.records import Record, RecordSource, Skip, check_no_traversal, open_source
from edgesmith.environment import env_number
from edgesmith.errors import ConfigError, InputError

DEFAULT_MAX_LENGTH = 128


def memory_budget() -> int:
    return int(env_number("EDGESMITH_DATA_MEMORY_MB", 512, whole=True, minimum=1)) << 20


@dataclass
class SkipCount:
    reasons: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    truncated: int = 0

    def add(self, s: Skip) -> None:
        self.reasons[s.reason] = self.reasons.get(s.reason, 0) + 1
        ex = self.examples.setdefault(s.reason, [])
        if len(ex) < 3:
            ex.append(s.where)

    @property
    def total(self) -> int:
        return sum(self.reasons.values())

    def describe(self) -> str:
        parts = [f"{n} {r} (e.g. {', '.join(self.examples[r])})" for r, n in sorted(self.reasons.items(), key=lambda kv: -kv[1])]
        if self.truncated:
            parts.append(f"{self.truncated} text(s) truncated to the maximum length")
        return "; ".join(parts)


class StreamedBatches:
    """A re-iterable sequence of batches read from the files on each pass (the first batch is kept)."""

    def __init__(self, produce: Callable[[], Iterator[Any]], count: int, first: Any):
        self._produce, self._count, self._first = produce, count, first

    def __iter__(self) -> Iterator[Any]:
        yield from self._produce()

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __getitem__(self, i: int) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._count))]
        i = i + self._count if i < 0 else i
        if i == 0:
            return self._first
        for j, b in enumerate(self._produce()):
            if j == i:
                return b
        raise IndexError(i)


# ---------------------------------------------------------------- encoders


class _Encoder:
    """Turns a list of record values into {input name: array}."""

    describe: str = ""

    def __call__(self, values: list[Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        raise NotImplementedError


class _Images(_Encoder):
    def __init__(self, spec: Any, cfg: Any, base: Path):

        # the data source's block, else the one the model declares with its inputs (a factory's input_spec)
        given = getattr(cfg, "preprocess", None) or getattr(spec, "preprocess", None)
        self.enc, self.base = ImageEncoder(spec, preprocess_config(given)), base
        self.describe = f"images -> {spec.name}: {self.enc.describe()}"

    def one(self, value: Any, rng: np.random.Generator) -> np.ndarray:
        return self.enc(check_no_traversal(self.base, value) if isinstance(value, str) else value, rng)


class _Text(_Encoder):
    def __init__(self, specs: Sequence[Any], cfg: Any, tokenizer_dir: Path | None, skips: SkipCount):

        ref = getattr(cfg, "tokenizer", None) or (str(tokenizer_dir) if tokenizer_dir else None)
        if ref is None:
            raise ConfigError(
                "text data needs a tokenizer and the model is not a Transformers folder",
                hint="set `tokenizer: PATH/TO/TOKENIZER_FOLDER` in the data source (or --tokenizer)",
            )
        require("transformers")
        from transformers import AutoTokenizer

        path = Path(ref).expanduser()
        if not path.is_dir():
            raise InputError(f"tokenizer folder not found: {path}", hint="give a folder saved with tokenizer.save_pretrained (the hub is never contacted)")
        try:
            self.tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - transformers raises many kinds for a folder it cannot read
            raise InputError(
                f"cannot load a tokenizer from {path}: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}",
                hint="the folder needs tokenizer.json or the tokenizer's vocabulary files",
            ) from exc
        self.specs = [s for s in specs]
        fixed = next((s.shape[1] for s in specs if len(s.shape) == 2 and isinstance(s.shape[1], int)), None)
        limit = getattr(cfg, "max_length", None) or fixed or DEFAULT_MAX_LENGTH
        model_max = getattr(self.tok, "model_max_length", None)
        if isinstance(model_max, int) and 0 < model_max < limit:
            limit = model_max
        positions = _max_positions(path)
        if positions is not None and positions < limit:
            limit = positions
        self.max_length, self.skips = int(limit), skips
        self.describe = f"text -> {[s.name for s in specs]}: {type(self.tok).__name__}, padded/truncated to {self.max_length} tokens"

    def __call__(self, values: list[Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        enc = self.tok(values, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="np")
        full = self.tok(values, truncation=False)["input_ids"]
        self.skips.truncated += sum(len(ids) > self.max_length for ids in full)
        out = {}
        n = len(values)
        for s in self.specs:
            if s.name in enc:
                out[s.name] = np.asarray(enc[s.name])
            elif s.name == "token_type_ids":
                out[s.name] = np.zeros((n, self.max_length), np.int64)
            elif s.name == "position_ids":
                out[s.name] = np.broadcast_to(np.arange(self.max_length, dtype=np.int64), (n, self.max_length)).copy()
            else:
                raise InputError(f"the tokenizer gives {sorted(enc)}; the model also takes {s.name!r}", hint="give that input with an .npz or a data function")
        return out


class _Rows(_Encoder):
    def __init__(self, specs: Sequence[Any], cfg: Any):
        self.specs, self.columns = specs, dict(getattr(cfg, "columns", None) or {})
        self.describe = f"columns -> inputs {[(self.columns.get(s.name, s.name), s.name) for s in specs]}"

    def __call__(self, values: list[Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = {}
        for s in self.specs:
            col = self.columns.get(s.name, s.name)
            if col not in values[0]:
                raise InputError(
                    f"no column {col!r} for input {s.name!r} (columns: {sorted(values[0])[:12]})",
                    hint="name the column with `columns: {INPUT: COLUMN}` in the data source",
                )
            try:
                out[s.name] = np.stack([np.asarray(v[col], dtype=s.dtype) for v in values])
            except (ValueError, TypeError) as exc:
                raise InputError(f"column {col!r} does not stack into {s.dtype} arrays of one shape: {exc}", hint="give equal-shaped numeric rows") from exc
        return out


def _max_positions(folder: Path) -> int | None:
    """The longest sequence a Transformers model's position table takes (RoBERTa-style tables keep 2 for padding)."""

    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        n = int(cfg["max_position_embeddings"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return n - 2 if cfg.get("model_type") in ("roberta", "xlm-roberta", "camembert", "longformer") else n


def _encoder(src: RecordSource, specs: Sequence[Any], cfg: Any, tokenizer_dir: Path | None, skips: SkipCount) -> _Encoder:
    if src.kind == "image":
        fit = image_inputs(specs)
        if len(specs) != 1 or not fit:
            raise ConfigError(
                f"images feed one image input; the model takes {[f'{s.name}{list(s.shape)}' for s in specs]}",
                hint="give an .npz or a data function for models with other inputs",
            )
        return _Images(fit[0], cfg, src.path if src.path.is_dir() else src.path.parent)
    if src.kind == "text":
        return _Text(specs, cfg, tokenizer_dir, skips)
    return _Rows(specs, cfg)


# ---------------------------------------------------------------- labels


def _label_mapper(src: RecordSource, cfg: Any, model_labels: dict[str, int] | None) -> Callable[[Any], int] | None:
    """Class names (folder names, string labels) -> the model's class indices."""
    if not src.has_labels:
        return None
    given = getattr(cfg, "labels", None)
    mapping: dict[str, int] | None = None
    if isinstance(given, dict):
        mapping = {str(k): int(v) for k, v in given.items()}
    elif isinstance(given, str) and given not in ("sorted", "model"):
        path = Path(given).expanduser()
        if not path.is_file():
            raise InputError(f"class-name file not found: {path}", hint="one class name per line, in the model's class order")
        mapping = {ln.strip(): i for i, ln in enumerate(path.read_text(errors="replace").splitlines()) if ln.strip()}
    elif given == "model" or (given is None and model_labels and src.classes and any(c in model_labels for c in src.classes)):
        if not model_labels:
            raise ConfigError("`labels: model` needs a model whose config names its classes (id2label)", hint="give `labels:` as a mapping or a file")
        mapping = dict(model_labels)
    if src.classes is not None:
        if mapping is None:
            return lambda cls: int(cls)  # sorted folder names, 0..C-1
        folded = {k.lower(): v for k, v in mapping.items()}
        missing = [c for c in src.classes if c not in mapping and c.lower() not in folded]
        if missing:
            raise InputError(
                f"class folder(s) {missing[:5]} are not among the model's classes ({len(mapping)}, e.g. {list(mapping)[:4]})",
                hint="rename the folders, or map them with `labels: {FOLDER: INDEX}` (or a file of class names)",
            )
        table = [mapping.get(c, folded.get(c.lower())) for c in src.classes]
        return lambda cls: int(table[cls])

    mapping = mapping if mapping is not None else model_labels

    def index(v: Any) -> int:
        if isinstance(v, (float, np.floating)) and not (np.isfinite(v) and float(v).is_integer()):
            raise InputError(f"label {v!r} is not a class index", hint="labels are class indices 0..C-1 or class names")
        i = int(v)
        if not 0 <= i < 2**31:
            raise InputError(f"label {i if abs(i) < 10**12 else f'{float(i):.3g}'} is not a class index", hint="labels are class indices 0..C-1 or class names")
        return i

    def convert(v: Any) -> int:
        fraction = isinstance(v, (float, np.floating)) and np.isfinite(v) and not float(v).is_integer()  # 1.5: looked up as a name
        if isinstance(v, (bool, np.bool_, int, np.integer, float, np.floating)) and not fraction:
            return index(v)  # NaN, inf, 1e30 and -3 refused by name, not an OverflowError
        s = str(v).strip()
        if s.lstrip("-").isdigit():
            return index(int(s))
        if mapping is None:
            raise InputError(f"label {s!r} is a name and the model's classes are not known", hint="give `labels: {NAME: INDEX}` in the data source")
        if s not in mapping and s.lower() not in {k.lower() for k in mapping}:
            raise InputError(f"label {s!r} is not one of the model's classes (e.g. {list(mapping)[:4]})", hint="map it with `labels: {NAME: INDEX}`")
        return mapping.get(s, next(v for k, v in mapping.items() if k.lower() == s.lower()))

    return convert


# ---------------------------------------------------------------- reading


def select(count: int, skip: int, samples: int | None, seed: int | None) -> np.ndarray:
    """The record indices a data source reads, in file order: a seeded shuffle, then [skip, skip+samples)."""
    order = np.random.default_rng(seed).permutation(count) if seed is not None else np.arange(count)
    chosen = order[skip : None if samples is None else skip + samples]
    return np.sort(chosen)


def load_records(
    source: str,
    specs: Sequence[Any],
    *,
    role: str,
    cfg: Any,
    base_dir: Path | None,
    batch_size: int,
    tokenizer_dir: Path | None = None,
    model_labels: dict[str, int] | None = None,
    reporter: Any = None,
) -> Any:
    """Read a record source into a checked Dataset (in memory when small, streamed otherwise)."""
    from edgesmith.data.sources import Batch, Dataset, check_dataset

    src = open_source(
        source, base_dir, field=getattr(cfg, "field", None), label_field=getattr(cfg, "label_field", None), split=getattr(cfg, "split", None), role=role
    )
    skips = SkipCount()
    encode = _encoder(src, specs, cfg, tokenizer_dir, skips)
    to_label = _label_mapper(src, cfg, model_labels)
    seed = getattr(cfg, "seed", 0)
    split_at, samples, skip_n = getattr(cfg, "split_at", None), getattr(cfg, "samples", None), 0
    if split_at:
        if src.count < 2:
            raise InputError(
                f"{src.name} has {src.count} sample: it cannot be split into calibration and evaluation", hint="give more samples, or --eval-data separately"
            )
        cut = max(1, min(split_at, src.count // 2))  # NOTE: the same cut in both roles: the parts never overlap
        if role == "calibration":
            samples = min(samples or cut, cut)
        else:
            skip_n = cut
    chosen = select(src.count, skip_n, samples, seed)
    mask = np.zeros(src.count, bool)
    mask[chosen] = True

    def produce(stats: SkipCount | None, on_progress: Callable[[int, int], None] | None = None) -> Iterator[Any]:
        rng = np.random.default_rng(seed)
        values: list[Any] = []
        labels: list[int] = []
        pending: list[Record] = []
        seen = 0
        pool = ThreadPoolExecutor(decode_threads()) if src.kind == "image" else None

        def drain() -> Iterator[Any]:
            """Decode the pending images side by side (Pillow releases the GIL), keep order, yield full batches."""
            nonlocal values, labels
            seeds = rng.integers(0, 2**31, size=len(pending))
            decoded = list(pool.map(lambda rs: _decode(encode, rs[0], rs[1]), zip(pending, seeds))) if pool else [(r.value, None) for r in pending]
            for rec, (value, skipped) in zip(pending, decoded):
                if skipped is not None:
                    if stats is not None:
                        stats.add(skipped)
                    continue
                values.append(value)
                if to_label is not None:
                    labels.append(to_label(rec.label))
                if len(values) == batch_size:
                    yield _batch(values, labels)
                    values, labels = [], []
            pending.clear()

        try:
            for i, rec in enumerate(src.records()):
                if i >= src.count:
                    break
                if not mask[i]:
                    continue
                seen += 1
                if isinstance(rec, Skip):
                    if stats is not None:
                        stats.add(rec)
                    continue
                pending.append(rec)
                if len(pending) >= batch_size:
                    yield from drain()
                    if on_progress is not None:
                        on_progress(seen, len(chosen))
            yield from drain()
            if values:
                yield _batch(values, labels)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

    def _batch(values: list[Any], labels: list[int]) -> Any:
        inputs = {encode.enc.name: np.stack(values)} if src.kind == "image" else encode(values, np.random.default_rng(0))  # type: ignore[attr-defined]
        b = Batch(inputs, np.asarray(labels, np.int64) if to_label is not None else None)
        check_dataset(Dataset(src.name, [b]), specs, role)
        return b

    progress = _Progress(reporter, f"reading {role} data {src.name}", src.kind)
    kept: list[Any] | None = []
    all_labels: list[np.ndarray] = []
    n_batches = n_samples = held = 0
    first = None
    for b in produce(skips, progress):
        first = first if first is not None else b
        n_batches += 1
        n_samples += b.size
        if b.labels is not None:
            all_labels.append(b.labels)
        if kept is not None:
            held += sum(a.nbytes for a in b.inputs.values())
            kept.append(b)
            if held > memory_budget():
                kept = None  # NOTE: past the budget: stream from the files on every pass
    progress.done(n_samples, skips)
    if n_samples == 0:
        why = f": {skips.describe()}" if skips.total else ""
        raise InputError(f"{role} data {src.name} gave no usable samples{why}", hint="check the files (see the skipped reasons)")
    part = "" if not split_at else (" (the calibration part of a seeded split)" if role == "calibration" else " (the part calibration did not take)")
    notes = [
        f"{role} data {src.name}: {n_samples} of {src.count} sample(s){part}"
        + (f", shuffled with seed {seed}" if seed is not None and len(chosen) < src.count else ""),
        encode.describe,
    ]
    if skips.total or skips.truncated:
        notes.append(f"{role} data {src.name}: skipped {skips.total}: {skips.describe()}" if skips.total else f"{role} data {src.name}: {skips.describe()}")
    batches: Any = kept if kept is not None else StreamedBatches(lambda: produce(None), n_batches, first)
    labels_arr = np.concatenate(all_labels) if to_label is not None and all_labels else None
    ds = Dataset(
        f"{src.name}" + (f"[{cfg.split}]" if getattr(cfg, "split", None) else ""),
        batches,
        known_samples=n_samples,
        known_labels=labels_arr,
        notes=notes,
        streamed=kept is None,
        skipped=dict(skips.reasons),
        classes=src.classes,
    )
    return ds


def decode_threads() -> int:
    """Images decoded side by side: one per core (at most 4), EDGESMITH_DECODE_THREADS to change it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return int(env_number("EDGESMITH_DECODE_THREADS", max(1, min(4, cores)), whole=True, minimum=1))


def _decode(encode: Any, rec: Record, seed: int) -> tuple[Any, Skip | None]:
    """One image record -> (array, None), or (None, the reason it is skipped)."""
    from PIL import Image

    try:
        return encode.one(rec.value, np.random.default_rng(seed)), None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # NOTE: Pillow's errors for broken files
        return None, Skip(rec.where, _image_reason(exc))
    except Image.DecompressionBombError:
        return None, Skip(rec.where, "image too large (decompression bomb guard)")


def _image_reason(exc: BaseException) -> str:
    text = str(exc).lower()
    if "truncated" in text:
        return "truncated image"
    if "cannot identify" in text:
        return "not a readable image"
    return f"undecodable image ({type(exc).__name__})"


class _Progress:
    """A plain progress line every few seconds (a terminal and a log alike) through the reporter."""

    def __init__(self, reporter: Any, what: str, kind: str):
        self.rep, self.what, self.kind = reporter, what, kind
        self.start = self.last = time.monotonic()

    def __call__(self, seen: int, total: int) -> None:
        now = time.monotonic()
        if self.rep is not None and now - self.last >= 3.0:
            self.last = now
            rate = seen / max(now - self.start, 1e-9)
            eta = (total - seen) / rate if rate > 0 else 0
            self.rep.info(f"{self.what}: {seen}/{total} {'images' if self.kind == 'image' else 'records'} ({rate:.0f}/s, about {eta:.0f} s left)")

    def done(self, n: int, skips: SkipCount) -> None:
        took = time.monotonic() - self.start
        if self.rep is not None and took >= 3.0:
            self.rep.info(f"{self.what}: {n} samples in {took:.1f} s ({n / max(took, 1e-9):.0f}/s)")


__all__ = ["Record", "RecordSource", "StreamedBatches", "load_records", "select"]
