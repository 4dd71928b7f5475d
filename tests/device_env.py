"""The device side's Python environment for tests: a virtual environment with only the torch-free core
and ONNX Runtime (as a device would have after ``pip install edgesmith[ort]``, less the optional custom-op
library, which ``edgesmith device setup`` installs), built once and kept between test runs in
``~/.cache/edgesmith-tests`` (keyed by the requirements), one builder at a time across xdist workers."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def device_python() -> Path:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], "onnxruntime>=1.20"]
    constraints = (ROOT / "constraints.txt").read_text()
    key = hashlib.sha256(f"{sys.version}\n{requirements}\n{constraints}".encode()).hexdigest()[:16]
    cache = Path(os.environ.get("EDGESMITH_TEST_CACHE") or Path.home() / ".cache" / "edgesmith-tests")
    cache.mkdir(parents=True, exist_ok=True)
    venv = cache / f"device-env-{key}"
    py = venv / "bin" / "python"
    with open(cache / f"device-env-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(py), "-m", "pip", "install", "--quiet", "-c", str(ROOT / "constraints.txt"), *requirements], check=True, capture_output=True, text=True
            )
            (venv / ".complete").write_text("ok\n")
    return py
