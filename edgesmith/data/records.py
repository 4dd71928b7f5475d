"""Record sources, read lazily in a fixed order: an image folder (flat, or one sub-folder per class),
text lines (``.txt``), JSON lines (``.jsonl``), CSV (``.csv``), parquet and arrow files, and a folder
saved by Hugging Face ``datasets`` (``save_to_disk``).

A source counts its records without decoding them and yields them one by one: a ``Record`` (a value
to encode, an optional label, where it came from) or a ``Skip`` (where, and why: an undecodable line,
a non-image file). Records are encoded into model inputs by ``edgesmith.data.stream``.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesmith.data.preprocess import IMAGE_EXTENSIONS
from edgesmith.errors import ConfigError, InputError

TEXT_SUFFIXES = (".txt", ".jsonl", ".csv", ".tsv")
MAX_CSV_FIELD = 64 << 20
TABLE_SUFFIXES = (".parquet", ".arrow")
TEXT_FIELDS = ("text", "sentence", "content", "question", "review", "document", "input")
LABEL_FIELDS = ("label", "labels", "target", "class", "y")
IMAGE_FIELDS = ("image", "img", "pixel_values", "picture", "photo")


@dataclass
class Record:
    value: Any  # an image path or bytes, a text string, or a {column: value} row
    label: Any = None
    where: str = ""


@dataclass
class Skip:
    where: str
    reason: str


@dataclass
class RecordSource:
    """``kind`` is image, text or row; ``classes`` the class names of an ImageFolder (index = label)."""

    name: str
    kind: str
    path: Path
    count: int
    classes: list[str] | None = None
    has_labels: bool = False
    field: str | None = None
    label_field: str | None = None
    _items: Any = None  # image folder: (relative path, class index) pairs; tables: file list

    def records(self) -> Iterator[Record | Skip]:
        if self.kind == "image":
            for rel, cls in self._items:
                p = self.path / rel
                if cls is None and self.classes is not None:
                    yield Skip(rel, "outside every class folder")
                elif p.suffix.lower() not in IMAGE_EXTENSIONS:
                    yield Skip(rel, f"not an image file ({p.suffix or 'no extension'})")
                else:
                    yield Record(p, cls, rel)
        elif self.path.suffix.lower() == ".txt":
            yield from _text_lines(self.path)
        elif self.path.suffix.lower() == ".jsonl":
            yield from _jsonl(self.path, self.field, self.label_field)
        elif self.path.suffix.lower() in (".csv", ".tsv"):
            yield from _csv(self.path, self.field, self.label_field)
        else:
            yield from _table_rows(self._items, self.field, self.label_field)


# ---------------------------------------------------------------- what a path is


def is_record_source(source: str, base_dir: Path | None) -> bool:
    p = _resolve(source, base_dir)
    return p.suffix.lower() in TEXT_SUFFIXES + TABLE_SUFFIXES or p.is_dir()


def _resolve(source: str, base_dir: Path | None) -> Path:
    p = Path(source).expanduser()
    return p if p.is_absolute() or base_dir is None else base_dir / p


def open_source(
    source: str, base_dir: Path | None, *, field: str | None = None, label_field: str | None = None, split: str | None = None, role: str = "evaluation"
) -> RecordSource:
    """A path -> its RecordSource (nothing decoded yet)."""
    path = _resolve(source, base_dir)
    if not path.exists():
        raise InputError(f"data not found: {path}", hint="give an existing folder or file (relative paths resolve against the recipe's folder)")
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return _datasets_folder(path, split, role, field, label_field)
        return _image_folder(path)
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return _tables(path, [path], field, label_field)
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {path}", hint="check the file's permissions")
    count = _count_lines(path) - (1 if suffix in (".csv", ".tsv") else 0)
    src = RecordSource(path.name, "text", path, max(count, 0), field=field, label_field=label_field)
    if suffix in (".csv", ".tsv"):
        src.field, src.label_field = _csv_fields(path, field, label_field)
        src.has_labels = src.label_field is not None
    elif suffix == ".jsonl":
        src.field, src.label_field = _jsonl_fields(path, field, label_field)
        src.has_labels = src.label_field is not None
    if src.count == 0:
        raise InputError(f"{path} holds no samples", hint="give a file with one sample per line")
    return src


def _count_lines(path: Path) -> int:
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


# ---------------------------------------------------------------- image folders


def _image_folder(root: Path) -> RecordSource:
    """Flat (every file a sample, unlabelled) or ImageFolder (one sub-folder per class, labels from the
    sorted folder names). Hidden files are ignored; a file that is not an image is a counted skip."""
    top_files, class_dirs = [], []
    with os.scandir(root) as it:
        for e in it:
            if e.name.startswith("."):
                continue
            if e.is_dir(follow_symlinks=False):
                class_dirs.append(e.name)
            elif e.is_file():
                top_files.append(e.name)
    class_dirs.sort()
    if not class_dirs:
        items: list[tuple[str, int | None]] = [(n, None) for n in sorted(top_files)]
        if not items:
            raise InputError(f"image folder {root} is empty", hint="put image files in it (flat), or one sub-folder of images per class")
        return RecordSource(root.name, "image", root, len(items), _items=items)
    classes: list[str] = []
    items = []
    for name in class_dirs:
        files = sorted(_walk_files(root / name))
        if files:
            classes.append(name)
            items += [(f"{name}/{f}", len(classes) - 1) for f in files]
    if not items:
        raise InputError(f"image folder {root} has sub-folders but no files in them", hint="one sub-folder of images per class")
    if len(classes) == 1:
        raise InputError(
            f"image folder {root} has one class folder ({classes[0]!r}): every label would be the same",
            hint=f"for unlabelled images give the folder itself ({root / classes[0]}); for labels, one sub-folder per class",
        )
    items += [(n, None) for n in sorted(top_files)]  # NOTE: files beside the class folders have no label: skipped below
    src = RecordSource(root.name, "image", root, len(items), classes=classes, has_labels=True, _items=items)
    return src


def _walk_files(folder: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, folder)
        for f in filenames:
            if not f.startswith("."):
                yield f if rel == "." else f"{rel}/{f}"


# ---------------------------------------------------------------- text files


def _text_lines(path: Path) -> Iterator[Record | Skip]:
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if i == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                yield Skip(f"{path.name}:{i}", "not UTF-8")
                continue
            if not line.strip():
                yield Skip(f"{path.name}:{i}", "empty line")
            else:
                yield Record(line, None, f"{path.name}:{i}")


def _pick(keys: list[str], given: str | None, candidates: tuple[str, ...], what: str, path: Path, where: str) -> str | None:
    if given is not None:
        if given not in keys:
            raise InputError(f"{path.name}{where} has no {what} {given!r} (it has {keys[:12]})", hint=f"name an existing {what}")
        return given
    return next((k for k in candidates if k in keys), None)


def _jsonl_fields(path: Path, field: str | None, label_field: str | None) -> tuple[str, str | None]:
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict):
                keys = list(obj)
                text = _pick(keys, field, TEXT_FIELDS, "field", path, f" line {i}")
                if text is None:
                    raise InputError(
                        f"{path.name} line {i}: no text field among {keys[:12]}", hint="name it with `field:` in the data source (or --text-field)"
                    )
                return text, _pick(keys, label_field, LABEL_FIELDS, "label field", path, f" line {i}")
    raise InputError(f"{path} has no JSON object on any line", hint='one JSON object per line, e.g. {"text": "...", "label": 0}')


def _jsonl(path: Path, field: str | None, label_field: str | None) -> Iterator[Record | Skip]:
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            where = f"{path.name}:{i}"
            if not raw.strip():
                yield Skip(where, "empty line")
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                yield Skip(where, "not JSON")
                continue
            if not isinstance(obj, dict) or field not in obj:
                raise InputError(
                    f"{path.name} line {i} has no field {field!r}" + (f" (it has {list(obj)[:12]})" if isinstance(obj, dict) else " (not an object)"),
                    hint="every line needs the text field; fix the line or name the field with `field:`",
                )
            if label_field is not None and label_field not in obj:
                raise InputError(f"{path.name} line {i} has no label field {label_field!r}", hint="label every line, or drop the labels")
            if not isinstance(obj[field], str):
                yield Skip(where, f"text is {type(obj[field]).__name__}, not a string")
                continue
            if not obj[field].strip():
                yield Skip(where, "empty text")
                continue
            yield Record(obj[field], obj.get(label_field) if label_field else None, where)


def _csv_fields(path: Path, field: str | None, label_field: str | None) -> tuple[str, str | None]:

    csv.field_size_limit(max(csv.field_size_limit(), MAX_CSV_FIELD))
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:  # -sig: a BOM (Excel's CSV) is not a header
        try:
            header = next(csv.reader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ","), [])
        except csv.Error as exc:
            raise InputError(f"cannot read the header of {path.name}: {exc}", hint="the first line names the columns, e.g. text,label") from exc
    text = _pick(header, field, TEXT_FIELDS, "column", path, "")
    if text is None:
        raise InputError(f"{path.name} has no text column among {header[:12]}", hint="name it with `field:` in the data source (or --text-field)")
    return text, _pick(header, label_field, LABEL_FIELDS, "label column", path, "")


def _csv(path: Path, field: str | None, label_field: str | None) -> Iterator[Record | Skip]:

    csv.field_size_limit(max(csv.field_size_limit(), MAX_CSV_FIELD))  # a long review is a sample (truncated when tokenized)
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        rows = iter(reader)
        for i in itertools.count(2):
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InputError(
                    f"{path.name} line {reader.line_num}: {exc}", hint="fix the row (quote fields that hold the delimiter or a line break)"
                ) from exc
            where = f"{path.name}:{i}"
            text = row.get(field)
            if label_field is not None and text is not None and row.get(label_field) is None:
                raise InputError(
                    f"{path.name} line {reader.line_num} has no {label_field!r} value", hint="label every row; an unclosed quote takes in the lines after it"
                )
            if text is None:
                yield Skip(where, "short row")
            elif any(0xDC80 <= ord(c) <= 0xDCFF for c in text):
                yield Skip(where, "not UTF-8")
            elif not text.strip():
                yield Skip(where, "empty text")
            else:
                yield Record(text, row.get(label_field) if label_field else None, where)


# ---------------------------------------------------------------- parquet, arrow, datasets folders


def _datasets_folder(path: Path, split: str | None, role: str, field: str | None, label_field: str | None) -> RecordSource:
    """A folder written by ``datasets.Dataset.save_to_disk`` (state.json + arrow files) or a DatasetDict's
    (dataset_dict.json + one such folder per split)."""
    if (path / "dataset_dict.json").is_file():
        try:
            splits = list(json.loads((path / "dataset_dict.json").read_text())["splits"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}/dataset_dict.json is not a datasets split list", hint="re-save it with save_to_disk") from exc
        prefer = [split] if split else (["train", "calibration", "validation"] if role == "calibration" else ["validation", "test", "eval", "train"])
        chosen = next((s for s in prefer if s in splits), None if split else (splits[0] if splits else None))
        if chosen is None:
            raise InputError(f"{path} has splits {splits}, not {split!r}", hint="set `split:` to one of them")
        return _datasets_folder(_inside(path, chosen), None, role, field, label_field)
    try:
        state = json.loads((path / "state.json").read_text())
        files = [_inside(path, f["filename"]) for f in state["_data_files"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}/state.json does not list the data files", hint="re-save it with datasets' save_to_disk") from exc
    return _tables(path, files, field, label_field)


def _inside(root: Path, name: str) -> Path:
    p = (root / name).resolve()
    if not p.is_relative_to(root.resolve()):
        raise InputError(f"{root} names a file outside itself ({name!r})", hint="refusing path traversal from a dataset's metadata")
    return p


def _arrow_batches(path: Path, batch_rows: int = 256) -> Iterator[Any]:
    import pyarrow as pa

    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows)
        return
    with pa.memory_map(str(path)) as f:  # datasets writes the IPC stream format; plain .arrow files may be either
        try:
            reader = pa.ipc.open_stream(f)
        except pa.ArrowInvalid:
            f.seek(0)
            file_reader = pa.ipc.open_file(f)
            for i in range(file_reader.num_record_batches):
                yield file_reader.get_batch(i)
            return
        yield from reader


def _schema_and_rows(path: Path) -> tuple[Any, int]:
    import pyarrow as pa

    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path)
            return meta.schema_arrow, meta.metadata.num_rows
        rows, schema = 0, None
        for b in _arrow_batches(path):
            schema, rows = b.schema, rows + b.num_rows
        if schema is None:
            with pa.memory_map(str(path)) as f:
                schema = pa.ipc.open_stream(f).schema
        return schema, rows
    except (pa.ArrowException, OSError) as exc:
        raise InputError(
            f"cannot read {path} as {'parquet' if path.suffix == '.parquet' else 'arrow'}: {str(exc).splitlines()[0][:200]}",
            hint="the file may be truncated or of another format",
        ) from exc


def _tables(path: Path, files: list[Path], field: str | None, label_field: str | None) -> RecordSource:
    if not files:
        raise InputError(f"{path} lists no data files", hint="re-save the dataset")
    schema, count = None, 0
    for f in files:
        if not f.is_file():
            raise InputError(f"data file missing: {f}", hint="the dataset folder is incomplete; re-save it")
        s, n = _schema_and_rows(f)
        schema, count = schema or s, count + n
    assert schema is not None  # files is not empty
    names = list(schema.names)
    if field is None:
        field = next((k for k in IMAGE_FIELDS + TEXT_FIELDS if k in names), None)
    if field is not None and field not in names:
        raise InputError(f"{path.name} has no column {field!r} (it has {names[:12]})", hint="name an existing column with `field:`")
    label = _pick(names, label_field, LABEL_FIELDS, "label column", path, "")
    kind = "row"
    if field is not None:
        t = schema.field(field).type
        import pyarrow as pa

        if pa.types.is_string(t) or pa.types.is_large_string(t):
            kind = "text"
        elif pa.types.is_struct(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
            kind = "image"
    if count == 0:
        raise InputError(f"{path} holds no rows", hint="give a dataset with samples")
    return RecordSource(path.name, kind, path, count, field=field, label_field=label, has_labels=label is not None, _items=files)


def _table_rows(files: list[Path], field: str | None, label_field: str | None) -> Iterator[Record | Skip]:
    for f in files:
        row_no = 0
        for batch in _arrow_batches(f):
            cols = batch.to_pydict()
            for i in range(batch.num_rows):
                row_no += 1
                where = f"{f.name}:{row_no}"
                label = cols[label_field][i] if label_field else None
                if field is None:
                    yield Record({k: v[i] for k, v in cols.items() if k != label_field}, label, where)
                    continue
                value = cols[field][i]
                if isinstance(value, dict):  # datasets' Image feature: {bytes, path}
                    value = value.get("bytes") or value.get("path")
                if value is None or (isinstance(value, str) and not value.strip()):
                    yield Skip(where, f"empty {field}")
                else:
                    yield Record(value, label, where)


def check_no_traversal(base: Path, value: Any) -> Any:
    """An image path stored inside a dataset row must stay inside the dataset's folder."""
    if isinstance(value, str):
        p = (base / value).resolve()
        if not p.is_relative_to(base.resolve()):
            raise ConfigError(f"a dataset row points outside its folder ({value!r})", hint="refusing path traversal from dataset contents")
        return p
    return value
