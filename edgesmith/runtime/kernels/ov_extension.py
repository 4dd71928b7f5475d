"""The OpenVINO extension that runs ``edgesmith.BinaryConv`` on the compiled XNOR-popcount kernel
(``ov_binary_conv.cpp``: a custom ``ov::op::Op`` with the kernel in ``evaluate`` plus the ONNX frontend
mapping of the ``edgesmith`` domain node).

It is built on first use with the machine's C++ compiler against the installed openvino wheel's headers
and libraries (about 3 s), and cached by the hash of the sources and the OpenVINO version under
``$EDGESMITH_CACHE_DIR/ov-extension`` (default ``~/.cache/edgesmith``). Native code is loaded only from a
folder the user owns that nobody else can write (created 0700 whatever the umask; every folder above it
owned by the user or root and, where others may write it, sticky), and only when its SHA-256 matches the
one recorded when edgesmith built it; a library that fails either check is rebuilt, or refused when it is
not the user's. It cannot be built by ``pip install``:
pip builds in an isolated environment without openvino. Without a compiler or headers, the op falls back to
OpenVINO's float lowering and says so.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from edgesmith.errors import BackendUnavailable

HERE = Path(__file__).parent
SOURCES = ("ov_binary_conv.cpp", "bnn.cpp")


def cache_dir() -> Path:
    root = Path(os.environ.get("EDGESMITH_CACHE_DIR") or Path.home() / ".cache" / "edgesmith")
    return root / "ov-extension"


def _refuse(why: str) -> BackendUnavailable:
    return BackendUnavailable(
        f"refusing to load native code: {why}",
        hint="point EDGESMITH_CACHE_DIR at a folder of your own (OpenVINO runs edgesmith.BinaryConv as float ops meanwhile)",
    )


def private_dir(path: Path) -> Path:
    """``path`` made (0700) or checked: a folder the user owns, not writable by anyone else, below folders
    that nobody else can rename it in (each owned by the user or root, sticky where others may write)."""
    uid = os.getuid()
    for d in [*reversed([p for p in path.absolute().parents if not p.exists()]), path]:  # every folder made here: 0700
        if not d.exists():
            d.mkdir(mode=0o700)
            os.chmod(d, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(f"{path} is not a folder (a link?)")
    if st.st_uid != uid:
        raise _refuse(f"{path} belongs to another user (uid {st.st_uid})")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)  # ours, made under a permissive umask: closed now, before anything is loaded from it
    for parent in path.absolute().parents:
        pst = os.stat(parent)
        if pst.st_uid not in (uid, 0):
            raise _refuse(f"{parent} (above {path}) belongs to another user (uid {pst.st_uid})")
        if pst.st_mode & 0o022 and not pst.st_mode & stat.S_ISVTX:
            raise _refuse(f"{parent} (above {path}) can be written by others")
    return path


def _digest_file(lib: Path) -> Path:
    return lib.with_name(lib.name + ".sha256")


def _verified(lib: Path) -> bool:
    """The built library is the user's, writable by nobody else, and still what edgesmith built (its recorded hash)."""
    try:
        st, record = os.lstat(lib), _digest_file(lib)
        rst = os.lstat(record)
    except FileNotFoundError:
        return False
    for p, s_ in ((lib, st), (record, rst)):
        if not stat.S_ISREG(s_.st_mode) or s_.st_uid != os.getuid() or s_.st_mode & 0o022:
            raise _refuse(f"{p} is not a regular file of yours that only you can write")
    with open(lib, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest() == record.read_text().strip()


@functools.lru_cache(maxsize=1)
def library_path() -> str:
    """Path of the built extension (built now if needed); BackendUnavailable with the reason otherwise."""
    import openvino

    ov_dir = Path(openvino.__file__).parent
    include, libs = ov_dir / "include", ov_dir / "libs"
    digest = hashlib.sha256(b"".join((HERE / s).read_bytes() for s in SOURCES) + openvino.__version__.encode()).hexdigest()[:16]
    target = private_dir(cache_dir()) / f"edgesmith_ov_binary_{digest}.so"
    import fcntl

    with open(target.parent / ".build.lock", "w") as lock:  # one build at a time: a second process waits and finds it built
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build(target, include, libs)


def _build(target: Path, include: Path, libs: Path) -> str:
    if _verified(target):
        return str(target)
    compiler = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if compiler is None or not include.is_dir():
        raise BackendUnavailable(
            "cannot build the OpenVINO binary-conv extension: " + ("no C++ compiler" if compiler is None else f"no headers in {include}"),
            hint="install g++ (OpenVINO then runs edgesmith.BinaryConv as float ops meanwhile)",
        )
    core = sorted(libs.glob("libopenvino.so*"), key=lambda p: len(p.name))
    onnx_fe = sorted(libs.glob("libopenvino_onnx_frontend.so*"), key=lambda p: len(p.name))
    if not core or not onnx_fe:
        raise BackendUnavailable(f"cannot build the OpenVINO binary-conv extension: libopenvino not found in {libs}", hint="reinstall openvino")
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        cmd = [
            compiler,
            "-O3",
            "-std=c++17",
            "-shared",
            "-fPIC",
            "-fopenmp",
            f"-I{include}",
            f"-I{HERE}",
            str(HERE / "ov_binary_conv.cpp"),
            "-o",
            str(out),
            f"-L{libs}",
            f"-l:{core[0].name}",
            f"-l:{onnx_fe[0].name}",
            f"-Wl,-rpath,{libs}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:240]
            raise BackendUnavailable(
                f"building the OpenVINO binary-conv extension failed: {tail}",
                hint="OpenVINO runs edgesmith.BinaryConv as float ops meanwhile; set EDGESMITH_DEBUG=1 and run again",
            )
        os.chmod(out, 0o700)
        with open(out, "rb") as f:
            built = hashlib.file_digest(f, "sha256").hexdigest()
        record = Path(tmp) / "digest"
        record.write_text(built + "\n")
        os.chmod(record, 0o600)
        os.replace(record, _digest_file(target))  # NOTE: the record first: a library without its record is rebuilt, never trusted
        os.replace(out, target)  # NOTE: atomic: a concurrent build of the same hash writes the same file
    if not _verified(target):
        raise _refuse(f"{target} changed while it was being built")
    return str(target)
