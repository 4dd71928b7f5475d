"""What a run was made with and on: library versions and the host (recorded in every manifest)."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import sys
from importlib import metadata
from typing import Any

from edgesmith.errors import ConfigError

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


def env_number(name: str, default: float, *, whole: bool, minimum: float = 0, maximum: float = math.inf) -> float:
    """An ``EDGESMITH_*`` number from the environment, else ``default``: every such setting is read here, so a
    value that is not a finite number in [``minimum``, ``maximum``] (an integer when ``whole``) is one ConfigError
    naming it — never silently replaced by the default, clamped, or a ValueError at import."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value: float = int(raw) if whole else float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not minimum <= value <= maximum:
        kind = "a whole number" if whole else "a number"
        bounds = f">= {minimum:g}" if maximum == math.inf else f"in [{minimum:g}, {maximum:g}]"
        raise ConfigError(
            f"{name} must be {kind} {bounds}, got {raw!r}", hint=f"unset it for the default ({default:g}), or e.g. {name}={max(default, minimum):g}"
        )
    return value


def physical_memory() -> int | None:
    """This machine's RAM in bytes; None where the platform does not report it (callers then let numpy decide)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


MAX_KERNEL_THREADS = 1024  # the native kernels' OpenMP teams: more is a typo, not a machine


def bnn_threads() -> int:
    """Threads of the binary kernels inside a runtime (``EDGESMITH_BNN_THREADS``, default 1); the OpenVINO
    extension reads the same variable in C++, so it is checked here before that library is loaded."""
    return int(env_number("EDGESMITH_BNN_THREADS", 1, whole=True, minimum=1, maximum=MAX_KERNEL_THREADS))
