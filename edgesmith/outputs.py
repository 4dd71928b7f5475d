"""Outputs that never destroy anything, and runs that can be checked.

- Every file edgesmith writes goes through ``atomic_write_bytes``: written beside the destination,
  then renamed over it, with the user's umask. A destination that is not a regular file (a device
  node, a FIFO, a folder, a symlink) is refused, never replaced.
- A run writes into a staging folder and moves into its output directory at the end (``StagedOutput``):
  an interrupted or failed run leaves nothing; ``manifest.json`` is written last and marks a complete run.
  The output directory must be new, empty, or an earlier edgesmith run (whose files are replaced: no
  file of the old run stays beside the new manifest); any other folder is refused unless ``force``. Only
  what edgesmith recorded as its own is ever removed — the old run's ``outputs``, what commands wrote
  into the run later (``OWNED``: the gate's report folder), a crashed run's staging folder and
  checkpoints — never a file of the user's, with or without ``force``; a new output that would land on
  a user's file is refused. A lock file keeps two runs out of one folder at a time.
- The manifest records the SHA-256 of every file of the run and a digest over its own content;
  ``load_manifest(verify=True)`` (what ``check``, ``baseline save``, ``report`` and ``validate RUN_DIR``
  read) refuses a run whose files or manifest do not match, naming the file. This makes a run
  tamper-evident against copying or editing; it is not a signature (whoever can write the folder can
  recompute the digest).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgesmith.errors import ConfigError, InputError

MANIFEST = "manifest.json"
LOCK = ".edgesmith.lock"
# what a run folder may hold besides what its manifest lists: the manifest, the lock, gate outputs
RUN_EXTRAS = (MANIFEST, LOCK, "check")


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists():
        p = p.parent
    return p


def check_writable(out_dir: Path) -> None:
    """Fail early (before any work) when ``out_dir`` cannot be created or written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output path {out_dir} exists and is not a folder", hint="choose another --out / output_dir")
    anchor = _nearest_existing(out_dir)
    if not anchor.is_dir():
        raise ConfigError(f"output directory {out_dir} cannot be created: {anchor} is a file", hint="choose another --out / output_dir")
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgesmith-probe-", dir=anchor)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"output directory {out_dir} is not writable ({exc.strerror} at {anchor})", hint="choose a writable --out / output_dir") from exc


def check_output_file(path: Path) -> None:
    """A file destination must be absent or a regular file (never a device, FIFO, folder or symlink)."""
    if path.is_symlink():
        raise ConfigError(
            f"refusing to write {path}: it is a symbolic link (edgesmith never writes through links)", hint="give the real path, or remove the link"
        )
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file (a device, FIFO or socket)"
        raise ConfigError(f"refusing to write {path}: it is {kind}", hint="give the path of a regular file")
    check_writable(path.parent)


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all at once; refused when ``path`` is not a regular file."""
    path = Path(path)
    check_output_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # NOTE: mkstemp creates 0600; files get the user's usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_copy(src: Path, dest: Path) -> None:
    """Copy a file through the same rules (large files are streamed, not read into memory)."""
    check_output_file(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 over the manifest's content (every key but ``digest``), canonically serialised."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def is_run_dir(path: Path) -> bool:
    return (path / MANIFEST).is_file()


CHECKPOINTS = "checkpoints"  # a run's training checkpoints (distill/checkpoint.py), until the run completes
OWNED = ".edgesmith-owned.json"  # what commands wrote into a run folder after the run (the gate's check/): removed with the run


def own(run_dir: Path, paths: list[Path]) -> None:
    """Record ``paths`` (inside ``run_dir``, an edgesmith run) as edgesmith's, so a later run replacing this
    one removes them; anything not recorded is the user's and stays."""
    if not is_run_dir(run_dir):
        return
    record = run_dir / OWNED
    try:
        known = set(json.loads(record.read_text())) if record.is_file() else set()
    except (ValueError, OSError):
        known = set()
    root = run_dir.resolve()
    known |= {p.resolve().relative_to(root).as_posix() for p in paths if p.resolve().is_relative_to(root)}
    atomic_write_text(record, json.dumps(sorted(known), indent=1) + "\n")


def _ours(folder: Path) -> set[str]:
    """Relative paths in ``folder`` that edgesmith wrote: the old run's outputs still as it wrote them (same
    size and SHA-256: a file the user replaced since is the user's) and what was recorded as owned."""
    names: set[str] = {MANIFEST, OWNED}
    try:
        outputs = json.loads((folder / MANIFEST).read_text()).get("outputs") or {}
        for rel, rec in outputs.items():
            path = folder / rel
            if path.is_file() and not path.is_symlink() and path.stat().st_size == rec.get("bytes") and sha256(path) == rec.get("sha256"):
                names.add(rel)
    except (ValueError, OSError, AttributeError, TypeError):
        pass
    try:
        names |= {str(p) for p in json.loads((folder / OWNED).read_text())}
    except (ValueError, OSError, TypeError):
        pass
    return {n for n in names if n and not Path(n).is_absolute() and ".." not in Path(n).parts}


def check_resumable(out_dir: Path) -> None:
    """``--resume`` continues a run whose folder holds its checkpoints (anything else is refused, not overwritten)."""
    if not (out_dir / CHECKPOINTS).is_dir() or not any((out_dir / CHECKPOINTS).glob("*.pt")):
        raise ConfigError(
            f"--resume: {out_dir} holds no training checkpoints to continue from", hint="give the folder of the interrupted run, or leave --resume out"
        )
    others = [p.name for p in out_dir.iterdir() if p.name not in (LOCK, CHECKPOINTS) and not p.name.startswith(".edgesmith-staging-")]
    if others and not is_run_dir(out_dir):
        raise ConfigError(f"--resume: {out_dir} holds other files besides a run's ({others[0]})", hint="give the folder of the interrupted run")


def check_output_dir(out_dir: Path, force: bool = False) -> None:
    """The output-directory policy: never a filesystem root or the home folder; a folder that exists
    must be empty or an earlier edgesmith run, unless ``force``."""
    resolved = out_dir.absolute().resolve()
    if (
        resolved == Path(resolved.anchor)
        or resolved == Path.home().resolve()
        or len(resolved.parts) <= 2
        and resolved.parts[-1] in ("bin", "boot", "dev", "etc", "lib", "lib64", "proc", "root", "sbin", "sys", "usr", "var", "tmp", "home", "opt", "srv")
    ):
        raise ConfigError(f"refusing to use {resolved} as an output directory", hint="give a folder of its own, e.g. --out edgesmith-out/run")
    check_writable(out_dir)
    # NOTE: a run in progress holds only its lock and staging folder: the lock says who has it
    held = [p for p in out_dir.iterdir() if p.name != LOCK and not p.name.startswith(".edgesmith-staging-")] if out_dir.is_dir() else []
    if not force and [p.name for p in held] == [CHECKPOINTS]:
        raise ConfigError(
            f"output directory {out_dir} holds the training checkpoints of an interrupted run",
            hint="add --resume to continue that run, or --force to start it over",
        )
    if held and not is_run_dir(out_dir) and not force:
        raise ConfigError(
            f"output directory {out_dir} holds files and is not an edgesmith run: refusing to write into it",
            hint="choose a new or empty folder (an earlier run's folder is replaced whole), or pass --force",
        )


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held back (main thread, POSIX) while a cleanup runs; delivered when it is done."""
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held) if threading.current_thread() is threading.main_thread() else None
    except (AttributeError, OSError, ValueError):
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


class FolderLock:
    """An exclusive, non-blocking lock on ``<out_dir>/.edgesmith.lock`` (released by the kernel if we die)."""

    def __init__(self, out_dir: Path):
        import fcntl

        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / LOCK
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self.fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise ConfigError(f"another edgesmith run is writing {out_dir} right now", hint="wait for it, or choose another --out") from None
            raise

    def release(self) -> None:
        self.path.unlink(missing_ok=True)
        os.close(self.fd)


class StagedOutput:
    """``with StagedOutput(out_dir) as out:`` write under ``out.stage``; ``out.commit()`` publishes."""

    def __init__(self, out_dir: Path, force: bool = False, keep: tuple[str, ...] = ()):
        self.final = out_dir.absolute()
        check_output_dir(self.final, force)
        self.created = [d for d in (self.final, *self.final.parents) if not d.exists()]  # removed again if the run fails
        self.keep = set(keep)  # files of the folder the new run keeps (written by the command that runs it)
        self.lock = FolderLock(self.final)
        self.stage = Path(tempfile.mkdtemp(prefix=".edgesmith-staging-", dir=self.final))
        self.work = Path(tempfile.mkdtemp(prefix="edgesmith-work-"))
        # NOTE: removed at exit too: a signal that lands while __exit__ runs (or before the `with` is entered)
        # must not leave an empty work folder behind
        atexit.register(shutil.rmtree, str(self.work), True)
        self.committed = False

    def __enter__(self) -> StagedOutput:
        return self

    def __exit__(self, *exc: Any) -> None:
        with _signals_held():  # the cleanup runs whole; a Ctrl-C or SIGTERM arriving now is handled right after
            shutil.rmtree(self.stage, ignore_errors=True)
            shutil.rmtree(self.work, ignore_errors=True)
            self.lock.release()
            if not self.committed:  # a failed run leaves no folder it created behind (deepest first)
                for d in self.created:
                    if d.is_dir() and not any(d.iterdir()):
                        d.rmdir()

    def path(self, relative: str) -> Path:
        p = self.stage / relative
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def commit(self, manifest: dict[str, Any]) -> Path:
        """Replace whatever earlier run was in the output directory by this one, manifest last."""
        files = sorted(p for p in self.stage.rglob("*") if p.is_file())
        manifest["outputs"] = {str(p.relative_to(self.stage)): {"sha256": sha256(p), "bytes": p.stat().st_size} for p in files}
        manifest["digest"] = manifest_digest(manifest)
        # NOTE: only what edgesmith wrote is removed (the old run's outputs, owned extras, a crashed run's staging
        # and checkpoints); a user's file stays, and a new output that would land on one is refused
        ours = _ours(self.final)
        foreign = [p.relative_to(self.stage).as_posix() for p in files if (self.final / p.relative_to(self.stage)).exists()]
        foreign = [rel for rel in foreign if rel not in ours]
        if foreign:
            raise ConfigError(
                f"{self.final / foreign[0]} is not a file edgesmith wrote, and this run would replace it",
                hint="move it out of the output folder (edgesmith never overwrites or deletes a file it did not write), or choose another --out",
            )
        (self.final / MANIFEST).unlink(missing_ok=True)  # the old run is being replaced; no stale "complete" marker
        emptied: set[Path] = set()
        for rel in sorted(ours - {MANIFEST}, key=lambda r: -len(Path(r).parts)):
            old = self.final / rel
            if Path(rel).parts[0] in self.keep or old == self.stage:
                continue
            if old.is_file() or old.is_symlink():
                old.unlink()
            elif old.is_dir():
                shutil.rmtree(old)
            emptied.update(p for p in old.parents if p != self.final and p.is_relative_to(self.final))
        for old in self.final.iterdir():  # a crashed run's staging folder, an interrupted run's checkpoints: ours by name
            if old != self.stage and old.name not in self.keep and (old.name.startswith(".edgesmith-staging-") or old.name == CHECKPOINTS):
                shutil.rmtree(old, ignore_errors=True)
        for d in sorted(emptied, key=lambda p: -len(p.parts)):  # folders the old run's files left empty
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        for p in files:
            dest = self.final / p.relative_to(self.stage)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
        atomic_write_text(self.final / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")
        self.committed = True
        return self.final


def inside(run_dir: Path, rel: str) -> Path:
    """``run_dir / rel``, refused when a path read from a manifest points outside the run directory."""
    path = (run_dir / rel).resolve()
    if not path.is_relative_to(run_dir.resolve()):
        raise InputError(f"manifest path {rel!r} points outside {run_dir}", hint="refusing path traversal from the manifest")
    return path


def check_finite_metrics(data: dict[str, Any], where: str) -> None:
    """NaN anywhere in a metrics table, or an infinity other than SQNR's (identical outputs), is refused:
    a NaN compares false with every budget and would pass the gate."""
    for tname, t in (data.get("targets") or {}).items():
        if not isinstance(t, dict):
            raise InputError(f"{where}: target {tname!r} is not a table", hint="the file is damaged; rebuild it")
        for table in ("metrics", "reference_metrics"):
            for key, value in (t.get(table) or {}).items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    if value is None:
                        continue
                    raise InputError(f"{where}: {tname} {table}.{key} is {type(value).__name__}, not a number", hint="the file is damaged; rebuild it")
                if math.isnan(value) or (math.isinf(value) and not key.startswith("sqnr_db")):
                    raise InputError(
                        f"{where}: {tname} {table}.{key} is {value}, not a finite number", hint="refusing to compare against a non-finite metric; rebuild it"
                    )


def verify_run(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists is there with its recorded hash, and the manifest is intact."""
    where = run_dir / MANIFEST
    if "digest" not in manifest or "outputs" not in manifest:
        raise InputError(f"{where} carries no file hashes or digest: it cannot be verified", hint="rebuild the run with this version of edgesmith")
    if manifest["digest"] != manifest_digest(manifest):
        raise InputError(
            f"{where} was modified after the run wrote it (its content does not match its digest)", hint="rebuild the run; never edit a manifest by hand"
        )
    for rel, rec in manifest["outputs"].items():
        path = inside(run_dir, rel)
        if not path.is_file():
            raise InputError(f"{rel} of run {run_dir} is missing", hint="the run directory is incomplete; rebuild it")
        if sha256(path) != rec.get("sha256"):
            raise InputError(
                f"{rel} of run {run_dir} does not match the hash its manifest recorded (replaced or modified)",
                hint="rebuild the run; a run's files must be the ones it measured",
            )
    check_finite_metrics(manifest, str(where))


class DuplicateKey(ValueError):
    """A JSON object with one key twice: ``json`` keeps the last silently, which would hide an entry."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKey(repr(k))
        out[k] = v
    return out


def load_manifest(run_dir: Path, verify: bool = True) -> dict:
    """A complete run's ``manifest.json``, verified against the run's files unless ``verify=False``."""
    path = run_dir / MANIFEST
    if not path.is_file():
        raise InputError(
            f"{run_dir} has no manifest.json: it is not a complete edgesmith run", hint="give the output directory of `edgesmith run` / `quantize`"
        )
    try:
        manifest = json.loads(path.read_text(), object_pairs_hook=unique_keys)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc})", hint="the run directory is damaged; rebuild it") from exc
    except DuplicateKey as exc:
        raise InputError(
            f"{path} names {exc} twice (two targets of one name?)", hint="edgesmith never writes that: the file was edited; rebuild the run"
        ) from None
    if not isinstance(manifest, dict):
        raise InputError(f"{path} is not a manifest (a JSON object)", hint="the run directory is damaged; rebuild it")
    if verify:
        verify_run(run_dir, manifest)
    return manifest
