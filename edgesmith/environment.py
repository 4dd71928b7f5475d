"""What a run was made with and on: library versions and the host (recorded in every manifest)."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from importlib import metadata
from typing import Any

VERSIONED = ("edgesmith", "torch", "onnx", "onnxruntime", "onnxscript", "numpy", "scikit-learn", "pydantic", "typer", "openvino", "nncf",
             "neural-compressor")


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def host_info() -> dict[str, Any]:
    """What a latency figure was measured on (the CI gate compares recorded latencies only on the same CPU)."""
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return {"machine": platform.machine(), "processor": platform.processor(), "cpu": cpu, "cores": os.cpu_count(),
            "python": sys.version.split()[0]}


def host_arch() -> str:
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)
