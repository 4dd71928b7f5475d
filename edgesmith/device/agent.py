"""The device end of ``edgesmith.remote``: one request in, progress lines and one result out.

The build machine starts ``python -c BOOT PKG_DIR`` over SSH (``remote.session``), writes one JSON request
on stdin and keeps stdin open. This process answers with JSON lines on stdout: ``{"event": "progress"}``
while it works, then one ``{"event": "result"}`` or ``{"event": "error"}``. It imports no torch.

- **Files** arrive beforehand by content hash (``blobs/<sha256>`` under the device's work folder); a
  request names them as ``{relative path: sha256}`` and gets a job folder of hard links under ``jobs/``,
  removed when the request ends however it ends. Relative paths are data: spaces and quotes are fine,
  an absolute path or ``..`` is refused.
- **One timing job per device**: timing requests hold an exclusive ``flock`` on ``timing.lock``. The
  kernel drops it when this process dies, so a crashed or disconnected client never leaves the device locked.
- **The connection is the lifeline**: a thread reads stdin after the request; end of file (the client
  pressed Ctrl-C, crashed, or the network dropped) removes the job folder and ends this process group
  (the benchmark children with it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOCK_WAIT_S = 900.0  # how long a timing request waits for another client's timing job on this device
STALE_UPLOAD_S = 600.0  # a partial upload older than this is from a client that went away
_OUT_LOCK = threading.Lock()
_JOBS: list[Path] = []


class RequestError(Exception):
    """A request this agent cannot serve; ``kind`` tells the client how to word it."""

    def __init__(self, kind: str, message: str, hint: str = ""):
        super().__init__(message)
        self.kind, self.message, self.hint = kind, message, hint


def emit(event: str, **fields: Any) -> None:
    with _OUT_LOCK:
        sys.stdout.write(json.dumps({"event": event, **fields}, default=str) + "\n")
        sys.stdout.flush()


class Progress:
    """The Reporter protocol (edgesmith.progress), forwarded to the client as progress lines."""

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[None]:
        emit("progress", text=text)
        yield

    def info(self, text: str) -> None:
        emit("progress", text=text)

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None


def safe_rel(rel: str) -> Path:
    """A relative path from a request: no absolute path, no ``..``, no NUL; anything else (spaces, quotes) is a name."""

    if not isinstance(rel, str) or not rel or "\x00" in rel or rel.startswith(("/", "\\")) or any(p in ("..", "") for p in rel.split("/")):
        raise RequestError("input", f"refusing the file name {rel!r}: a relative path inside the job is required")
    return Path(*rel.split("/"))


def blob_dir(work: Path) -> Path:
    return work / "blobs"


def _sweep(folder: Path, prefix: str, older_than_s: float) -> None:
    now = time.time()
    for p in folder.glob(prefix + "*"):
        with contextlib.suppress(OSError):
            if now - p.lstat().st_mtime > older_than_s:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def have(work: Path, req: dict) -> dict:
    """Which of the named blobs this device holds, and the free space of its work folder."""

    blobs = blob_dir(work)
    blobs.mkdir(parents=True, exist_ok=True, mode=0o700)
    (work / "jobs").mkdir(exist_ok=True, mode=0o700)
    _sweep(blobs, ".tmp-", STALE_UPLOAD_S)
    _sweep(work / "jobs", "", 24 * 3600.0)  # a job folder a SIGKILL left behind
    names = [str(s) for s in req.get("blobs", []) if isinstance(s, str) and len(s) == 64 and all(c in "0123456789abcdef" for c in s)]
    st = os.statvfs(work)
    return {"have": [s for s in names if (blobs / s).is_file()], "free_bytes": st.f_bavail * st.f_frsize, "work": str(work)}


@contextlib.contextmanager
def job_folder(work: Path, files: dict[str, str], verify: list[str]) -> Iterator[Path]:
    """A folder of the request's files (hard links to blobs, copies where links fail), removed afterwards.
    Blobs uploaded by this request (``verify``) are checked against their hash first."""

    from edgesmith.outputs import sha256  # the standard library and edgesmith.errors only: fine on a bare device

    blobs = blob_dir(work)
    for sha in verify:
        path = blobs / sha
        if path.is_file() and sha256(path) != sha:
            path.unlink()
            raise RequestError("corrupt", f"an uploaded file did not arrive intact (sha256 {sha[:12]}...)", "run the command again")
    job = work / "jobs" / f"{os.getpid()}-{os.urandom(4).hex()}"
    job.mkdir(parents=True, mode=0o700)
    _JOBS.append(job)
    try:
        for rel, sha in files.items():
            dest = job / safe_rel(rel)
            src = blobs / str(sha)
            if not (len(str(sha)) == 64 and src.is_file()):
                raise RequestError("missing", f"{rel} (sha256 {str(sha)[:12]}...) is not on the device", "run the command again to upload it")
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dest)
            except OSError:
                shutil.copyfile(src, dest)
        yield job
    finally:
        shutil.rmtree(job, ignore_errors=True)
        _JOBS.remove(job)


@contextlib.contextmanager
def timing_lock(work: Path, client: str, wait_s: float) -> Iterator[dict]:
    """Exclusive use of this device for timing; waits (saying for whom) up to ``wait_s``."""

    path = work / "timing.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        start, said = time.time(), 0.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.time() - start
                if waited > wait_s:
                    raise RequestError(
                        "busy", f"another client has held this device's timing lock for over {wait_s:.0f} s ({_holder(fd)})", "try again later"
                    ) from None
                if waited - said >= 10.0 or not said:
                    emit("progress", text=f"waiting for the device: another timing job runs ({_holder(fd)})")
                    said = waited or 0.001
                time.sleep(0.2)
        held = {"pid": os.getpid(), "client": client, "since": time.strftime("%Y-%m-%d %H:%M:%S"), "acquired": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(held).encode(), 0)
        try:
            yield held
        finally:
            held["released"] = time.time()
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"{info.get('client', 'a client')}, pid {info.get('pid')}, since {info.get('since')}"
    except (OSError, ValueError):
        return "holder unknown"


def _watch_stdin() -> None:
    """End of stdin: the client is gone. Remove job folders, end this process group (benchmark children too)."""

    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    for job in list(_JOBS):
        shutil.rmtree(job, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os._exit(130)


def main() -> None:
    with contextlib.suppress(OSError):
        os.setpgrp()  # this process and its benchmark children: one group, ended together
    line = sys.stdin.buffer.readline()
    threading.Thread(target=_watch_stdin, daemon=True).start()
    try:
        req = json.loads(line)
        work = Path(req["work"])
        from edgesmith.device import ops

        emit("result", value=ops.serve(req, work, Progress()))
    except RequestError as exc:
        emit("error", kind=exc.kind, message=exc.message, hint=exc.hint)
    except Exception as exc:  # noqa: BLE001 - every failure travels back to the client as one line
        from edgesmith.errors import BackendUnavailable, EdgesmithError

        kind = "runtime" if isinstance(exc, BackendUnavailable | ImportError) else "edgesmith" if isinstance(exc, EdgesmithError) else "internal"
        message = exc.message if isinstance(exc, EdgesmithError) else f"{type(exc).__name__}: {exc}"
        hint = getattr(exc, "hint", None) or ""
        emit("error", kind=kind, message=message, hint=hint, exit_code=getattr(exc, "exit_code", 3), trace=traceback.format_exc(limit=3)[-2000:])
    sys.stdout.flush()
    os._exit(0)


def client_name() -> str:
    return os.environ.get("SSH_CLIENT", "").split(" ")[0] or socket.gethostname()


if __name__ == "__main__":
    main()
