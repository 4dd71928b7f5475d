"""Atomic outputs: a run writes into a staging folder and moves files into place at the end.

An interrupted or failed run leaves no half-written artifact in the output directory, and a
run that fails on bad input leaves nothing at all. ``manifest.json`` is moved last, so its
presence marks a complete run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgesmith.errors import ConfigError


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists():
        p = p.parent
    return p


def check_writable(out_dir: Path) -> None:
    """Fail early (before any work) when ``out_dir`` cannot be created or written."""
    anchor = _nearest_existing(out_dir)
    if not anchor.is_dir():
        raise ConfigError(f"output directory {out_dir} cannot be created: {anchor} is a file", hint="choose another --out / output_dir")
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgesmith-probe-", dir=anchor)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"output directory {out_dir} is not writable ({exc.strerror} at {anchor})", hint="choose a writable --out / output_dir") from exc


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class StagedOutput:
    """``with StagedOutput(out_dir) as out:`` write under ``out.stage``; ``out.commit()`` publishes."""

    def __init__(self, out_dir: Path):
        self.final = out_dir.absolute()
        check_writable(self.final)
        anchor = _nearest_existing(self.final)
        self.stage = Path(tempfile.mkdtemp(prefix=".edgesmith-staging-", dir=anchor))
        self.work = Path(tempfile.mkdtemp(prefix="edgesmith-work-"))
        self.committed = False

    def __enter__(self) -> "StagedOutput":
        return self

    def __exit__(self, *exc: Any) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)

    def path(self, relative: str) -> Path:
        p = self.stage / relative
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def commit(self, manifest: dict[str, Any]) -> Path:
        """Move every staged file into the output directory, then write the manifest last."""
        files = sorted(p for p in self.stage.rglob("*") if p.is_file())
        manifest["outputs"] = {str(p.relative_to(self.stage)): {"sha256": sha256(p), "bytes": p.stat().st_size} for p in files}
        self.final.mkdir(parents=True, exist_ok=True)
        old_manifest = self.final / "manifest.json"
        old_manifest.unlink(missing_ok=True)  # the old run is being replaced; no stale "complete" marker
        for p in files:
            dest = self.final / p.relative_to(self.stage)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
        atomic_write_text(old_manifest, json.dumps(manifest, indent=2, default=str) + "\n")
        self.committed = True
        return self.final


def inside(run_dir: Path, rel: str) -> Path:
    """``run_dir / rel``, refused when a path read from a manifest points outside the run directory."""
    from edgesmith.errors import InputError

    path = (run_dir / rel).resolve()
    if not path.is_relative_to(run_dir.resolve()):
        raise InputError(f"manifest path {rel!r} points outside {run_dir}", hint="refusing path traversal from the manifest")
    return path


def load_manifest(run_dir: Path) -> dict:
    """A complete run's ``manifest.json`` (its presence marks a finished run)."""
    from edgesmith.errors import InputError

    path = run_dir / "manifest.json"
    if not path.is_file():
        raise InputError(f"{run_dir} has no manifest.json: it is not a complete edgesmith run", hint="give the output directory of `edgesmith run` / `quantize`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})", hint="the run directory is damaged; rebuild it") from exc
