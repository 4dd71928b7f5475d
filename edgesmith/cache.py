"""A content-addressed cache of pass results: a pass run on the same input with the same configuration
is not run again (a search's trials share their prefixes: one calibrated INT8 model, one pruned and
recovered network, feeds every trial that starts the same way).

Key: SHA-256 over what determines the output — the input model's bytes (or, for the torch stage, the
model's source, weights and data), the pass type and its full configuration, the target profile, the
content of the data it reads (decoded samples and labels, whatever the source), the source files of the
user's callables it names (factory, data function, metric), and the libraries' versions. An entry is a
folder of files plus ``entry.json`` listing each file's SHA-256, its key and a seal over both, checked on
every read: a changed, moved or half-written entry is discarded and recomputed, never used; the file an
entry hands back is one of its own (a name, never a path out of the cache). Like a run's manifest this
is tamper-evident, not signed: whoever can write the cache folder can rewrite an entry whole.

The cache folder carries a stamp (``CACHEDIR.json``) naming the edgesmith that wrote it, down to a
fingerprint of its code: a folder written by another version is ignored whole, with a note (its passes
may have computed something else), and nothing is written into it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesmith.compress.contract import BatchNormFolded, FloatWeights, WeightGrids
from edgesmith.data.run_data import content_digest
from edgesmith.environment import library_versions
from edgesmith.model_io import resolve
from edgesmith.outputs import atomic_write_text, sha256

FORMAT = 1
STAMP = "CACHEDIR.json"


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of edgesmith's own source (.py, .cpp): a cache entry is only as good as the code that made it."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.suffix in (".py", ".cpp") and "__pycache__" not in f.parts:
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _stamp() -> dict[str, Any]:

    return {"format": FORMAT, "edgesmith": library_versions().get("edgesmith", "unknown"), "code": code_fingerprint()}


def file_digest(path: Path) -> str:

    return sha256(path)


def key_of(material: dict[str, Any]) -> str:

    body = json.dumps({"material": material, "versions": library_versions(), "stamp": _stamp()}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def _seal(key: str, files: dict[str, str], meta: dict[str, Any]) -> str:
    """What binds an entry to its key: its files' digests and its metadata, hashed together with the key."""
    return hashlib.sha256(json.dumps({"key": key, "files": files, "meta": meta}, sort_keys=True).encode()).hexdigest()


@dataclass
class Hit:
    folder: Path
    files: list[str]
    meta: dict[str, Any]


@dataclass
class PassCache:
    """Entries under ``root``; ``hits``/``misses`` count this process's lookups (a search reports the rate)."""

    root: Path
    hits: int = 0
    misses: int = 0
    notes: list[str] = field(default_factory=list)
    usable: bool = True
    events: list[tuple[str, str]] = field(default_factory=list)  # (what, "hit" | "miss") in order

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        stamp_path = self.root / STAMP
        mine = _stamp()
        if stamp_path.is_file():
            try:
                theirs = json.loads(stamp_path.read_text())
            except (OSError, ValueError):
                theirs = {"edgesmith": "unreadable"}
            if theirs != mine:
                self.usable = False
                self.notes.append(
                    f"cache {self.root} was written by another edgesmith ({theirs.get('edgesmith')} code {theirs.get('code')}; "
                    f"this is {mine['edgesmith']} code {mine['code']}): ignored, every pass runs anew "
                    "(delete it, or give another --cache folder, to cache again)"
                )
            return
        if self.root.exists() and any(self.root.iterdir()):
            self.usable = False
            self.notes.append(f"cache folder {self.root} holds files but no {STAMP}: not an edgesmith cache, ignored")
            return
        self.root.mkdir(parents=True, exist_ok=True)

        atomic_write_text(stamp_path, json.dumps(mine) + "\n")

    def _folder(self, key: str) -> Path:
        return self.root / key[:2] / key

    def get(self, key: str, what: str = "") -> Hit | None:
        if not self.usable:
            return None
        folder = self._folder(key)
        hit = self._read(folder)
        if hit is None:
            self.misses += 1
            self.events.append((what, "miss"))
            return None
        self.hits += 1
        self.events.append((what, "hit"))
        return hit

    def _read(self, folder: Path) -> Hit | None:
        entry = folder / "entry.json"
        if not entry.is_file():
            return None
        try:
            data = json.loads(entry.read_text())
            files, meta = data["files"], data.get("meta", {})
            if data.get("stamp") != _stamp() or not isinstance(files, dict) or not isinstance(meta, dict):
                return None
            why = ""
            if data.get("key") != folder.name or data.get("seal") != _seal(folder.name, files, meta):
                why = "its seal does not match its key and content"
            elif meta.get("output") not in files:
                why = "it names an output that is not one of its files"
            for name, digest in files.items():
                f = folder / name
                if not why and (Path(name).name != name or name in (".", "..") or f.is_symlink() or not f.is_file() or file_digest(f) != digest):
                    why = f"{name} failed its checksum"
            if why:
                self.notes.append(f"cache entry {folder.name[:12]} discarded ({why}): recomputed")
                shutil.rmtree(folder, ignore_errors=True)  # NOTE: inside the cache, named by a key: ours to replace
                return None
            return Hit(folder, list(files), meta)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, files: list[Path], meta: dict[str, Any]) -> None:
        """Store ``files`` (copied) with ``meta`` (JSON); written aside and renamed into place, so a reader
        never sees half an entry and two workers storing the same key keep one."""
        if not self.usable:
            return
        folder = self._folder(key)
        if self._read(folder) is not None:
            return
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:8]}-", dir=folder.parent))
        try:
            digests = {}
            for f in files:
                shutil.copyfile(f, tmp / f.name)
                digests[f.name] = file_digest(tmp / f.name)
            meta = json.loads(json.dumps(meta, default=str))
            entry = {"stamp": _stamp(), "key": key, "files": digests, "meta": meta, "seal": _seal(key, digests, meta)}
            (tmp / "entry.json").write_text(json.dumps(entry))
            try:
                os.rename(tmp, folder)
            except OSError:  # another worker stored it first (or a discarded entry's folder is being replaced)
                pass
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def restore(self, hit: Hit, dest_dir: Path) -> list[Path]:
        dest_dir.mkdir(parents=True, exist_ok=True)
        out = []
        for name in hit.files:
            shutil.copyfile(hit.folder / name, dest_dir / name)
            out.append(dest_dir / name)
        return out

    @property
    def rate(self) -> float | None:
        n = self.hits + self.misses
        return self.hits / n if n else None


def identity(recipe: Any, base_dir: Path, kind: str, specs: list, inputs: dict[str, str], datasets: dict[str, Any] | None = None) -> dict[str, Any]:
    """What determines the exported model and the data passes read: the cache keys' common part. The data
    by content (``datasets``: role -> the loaded data set, decoded samples and labels hashed, whatever the
    source); every user callable the recipe names (``module:function``: a factory, a data function, a metric)
    by its module's source file (code it imports from elsewhere is not hashed)."""

    ident: dict[str, Any] = {
        "model": recipe.model.model_dump(mode="json"),
        "files": dict(inputs),
        "specs": [s.model_dump(mode="json") for s in specs],
        "export": recipe.export.model_dump(mode="json"),
        "outputs": recipe.outputs,
        "data": recipe.data.model_dump(mode="json"),
        "metric": getattr(recipe, "metric", None),
    }
    named = [recipe.model.source, getattr(recipe, "metric", None)]
    named += [getattr(getattr(recipe.data, role), "source", None) for role in ("calibration", "evaluation")]
    sources = {}
    for ref in named:
        if isinstance(ref, str) and ":" in ref and not ref.startswith(("/", ".")) and "://" not in ref:
            with contextlib.suppress(Exception):
                spec = importlib.util.find_spec(ref.split(":")[0])
                if spec is not None and spec.origin and Path(spec.origin).is_file():
                    sources[ref] = sha256(Path(spec.origin))
    ident["callable_sources"] = sources
    if kind == "torch" and recipe.model.source in sources:
        ident["factory_source"] = sources[recipe.model.source]
    ident["data_content"] = {role: content_digest(ds) for role, ds in (datasets or {}).items() if ds is not None}
    for role in ("calibration", "evaluation"):
        src = getattr(recipe.data, role)
        if src is not None and src.source.endswith(".npz"):
            ident[f"{role}_file"] = sha256(resolve(src.source, base_dir))
    return ident


RECORDS_FILE = "records.safetensors"


def _records_state(records: Any) -> tuple[dict[str, Any], list[dict]] | None:
    """Typed records (compress.contract) as tensors + JSON, or None when one has a type this cache cannot
    store (a plugin's own record): then the step is not cached."""
    tensors: dict[str, Any] = {}
    meta: list[dict] = []
    for rec in records.all():
        kind = type(rec).__name__
        if kind == "FloatWeights":
            tensors.update({f"fw/{n}": t.detach().contiguous().cpu() for n, t in rec.entries.items()})
            meta.append({"type": kind, "names": list(rec.entries)})
        elif kind == "WeightGrids":
            tensors.update({f"wg/{n}": g["scale"].detach().contiguous().cpu() for n, g in rec.entries.items()})
            meta.append({"type": kind, "bits": {n: int(g["bits"]) for n, g in rec.entries.items()}})
        elif kind == "BatchNormFolded":
            meta.append({"type": kind, "layers": list(rec.layers)})
        else:
            return None
    return tensors, meta


def _records_digest(records: Any) -> str | None:
    state = _records_state(records)
    if state is None:
        return None
    tensors, meta = state
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].numpy().tobytes())
    return h.hexdigest()


def _restore_records(records: Any, meta: list[dict], folder: Path) -> None:

    tensors = {}
    if (folder / RECORDS_FILE).is_file():
        from safetensors.torch import load_file

        tensors = load_file(str(folder / RECORDS_FILE))
    for m in meta:
        if m["type"] == "FloatWeights":
            records.add(FloatWeights({n: tensors[f"fw/{n}"] for n in m["names"]}))
        elif m["type"] == "WeightGrids":
            records.add(WeightGrids({n: {"scale": tensors[f"wg/{n}"], "bits": b} for n, b in m["bits"].items()}))
        elif m["type"] == "BatchNormFolded":
            records.add(BatchNormFolded(tuple(m["layers"])))


def cached(
    cache: Any, ident: dict[str, Any], what: str, material: dict[str, Any], dest: Path, compute: Any, ctx: Any = None, extra: dict[str, Any] | None = None
) -> Path:
    """``compute()`` (which returns one file), or its earlier result from the cache, restored into ``dest``.
    The notes and details it adds to ``ctx``, the typed records it hands on (stored with safetensors) and
    ``extra`` (records for the manifest) travel with the entry; the records a step receives are part of its
    key. A record of a type the cache cannot store (a plugin's) turns caching off for the step."""
    records = ctx.records if ctx is not None else None
    incoming = _records_digest(records) if records is not None and records.kinds() else ""
    if cache is None or incoming is None:
        return Path(compute())
    key = key_of({**material, "step": what, "identity": ident, "records_in": incoming})
    hit = cache.get(key, what)
    if hit is not None:
        cache.restore(hit, dest)
        if ctx is not None:
            ctx.notes.extend(hit.meta.get("notes", []))
            ctx.details.update(hit.meta.get("details", {}))
            _restore_records(ctx.records, hit.meta.get("records", []), hit.folder)
        if extra is not None:
            extra.update(hit.meta.get("extra", {}))
        (dest / RECORDS_FILE).unlink(missing_ok=True)
        return dest / hit.meta["output"]
    notes, details = (len(ctx.notes), dict(ctx.details)) if ctx is not None else (0, {})
    out = Path(compute())
    state = _records_state(records) if records is not None else ({}, [])
    if state is None:
        return out
    files = [out]
    if state[0]:
        from safetensors.torch import save_file

        tmp = Path(tempfile.mkdtemp(prefix="edgesmith-records-"))
        save_file(state[0], str(tmp / RECORDS_FILE))
        files.append(tmp / RECORDS_FILE)
    new = {k: v for k, v in ctx.details.items() if k not in details or details[k] != v} if ctx is not None else {}
    meta = {"output": out.name, "notes": ctx.notes[notes:] if ctx is not None else [], "details": new, "extra": extra or {}, "records": state[1]}
    cache.put(key, files, json.loads(json.dumps(meta, default=str)))
    if len(files) > 1:
        shutil.rmtree(files[1].parent, ignore_errors=True)
    return out
