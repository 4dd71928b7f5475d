"""What a run was made with and on: library versions and the host (recorded in every manifest)."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from importlib import metadata
from typing import Any

VERSIONED = ("edgesmith", "torch", "onnx", "onnxruntime", "onnxscript", "numpy", "scikit-learn", "pydantic", "typer", "openvino", "nncf", "neural-compressor")


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
    return {"machine": platform.machine(), "processor": platform.processor(), "cpu": cpu, "cores": os.cpu_count(), "python": sys.version.split()[0]}


def host_arch() -> str:
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


# profile ISA names that /proc/cpuinfo spells otherwise; names of non-CPU features (cuda-*) are not host flags
_FLAG_ALIASES = {"neon": "asimd"}


def host_cpu_flags() -> set[str] | None:
    """The CPU feature flags of this host (``/proc/cpuinfo``), or None where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def missing_cpu_features(isa: list[str]) -> list[str]:
    """Which of a profile's required CPU features this host lacks ([] when all are there or unknown)."""
    flags = host_cpu_flags()
    if flags is None:
        return []
    wanted = [f for f in isa if not f.startswith("cuda")]
    return [f for f in wanted if _FLAG_ALIASES.get(f, f) not in flags]
