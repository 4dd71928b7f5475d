"""The OpenVINO extension that runs ``edgesmith.BinaryConv`` on the compiled XNOR-popcount kernel
(``ov_binary_conv.cpp``: a custom ``ov::op::Op`` with the kernel in ``evaluate`` plus the ONNX frontend
mapping of the ``edgesmith`` domain node).

It is built on first use with the machine's C++ compiler against the installed openvino wheel's headers
and libraries (about 3 s), and cached by the hash of the sources and the OpenVINO version under
``$EDGESMITH_CACHE_DIR/ov-extension`` (default ``~/.cache/edgesmith``). It cannot be built by ``pip install``:
pip builds in an isolated environment without openvino. Without a compiler or headers, the op falls back to
OpenVINO's float lowering and says so.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgesmith.errors import BackendUnavailable

HERE = Path(__file__).parent
SOURCES = ("ov_binary_conv.cpp", "bnn.cpp")


def cache_dir() -> Path:
    root = Path(os.environ.get("EDGESMITH_CACHE_DIR") or Path.home() / ".cache" / "edgesmith")
    return root / "ov-extension"


@functools.lru_cache(maxsize=1)
def library_path() -> str:
    """Path of the built extension (built now if needed); BackendUnavailable with the reason otherwise."""
    import openvino

    ov_dir = Path(openvino.__file__).parent
    include, libs = ov_dir / "include", ov_dir / "libs"
    digest = hashlib.sha256(b"".join((HERE / s).read_bytes() for s in SOURCES) + openvino.__version__.encode()).hexdigest()[:16]
    target = cache_dir() / f"edgesmith_ov_binary_{digest}.so"
    if target.is_file():
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
    target.parent.mkdir(parents=True, exist_ok=True)
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
        os.replace(out, target)  # NOTE: atomic: a concurrent build of the same hash writes the same file
    return str(target)
