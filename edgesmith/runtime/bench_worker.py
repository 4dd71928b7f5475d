"""Child process of ``runtime.bench``: loads artifacts, times them, prints one JSON line.

With several artifacts, timing is interleaved in rounds (each round runs every artifact in turn),
so drift on a noisy machine affects them alike. Peak memory is only meaningful with one artifact
per process, so ``bench`` asks for it in a separate child per artifact.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
from pathlib import Path
from typing import Any


def _status_mb(field: str) -> float:
    """VmRSS / VmHWM from /proc (per address space, so not inherited from the parent like ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # NOTE: fallback off Linux


def _die_with_parent(parent: int | None) -> None:
    """The kernel kills this child when its parent dies (Linux PR_SET_PDEATHSIG): a killed
    `edgesmith bench` leaves no benchmark running under PID 1."""
    import os
    import signal

    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # NOTE: not Linux: the parent's subprocess.run still kills us on its errors
        pass
    if parent is not None and os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def main() -> None:
    job = json.loads(sys.stdin.read())
    _die_with_parent(job.get("parent"))
    import numpy as np

    from edgesmith.runtime import Artifact, get_backend
    from edgesmith.runtime.bench import summarize, time_interleaved
    from edgesmith.runtime.contention import assess, round_spread, snapshot

    with np.load(job["feeds"], allow_pickle=False) as npz:
        feeds = {k: npz[k] for k in npz.files}
    # NOTE: import the runtime libraries before the baseline so model memory excludes the libraries; a plugin's
    # backend (an entry point, found here as in the parent) names its runtime module, or has none to preload
    for a in job["artifacts"]:
        module = getattr(get_backend(a["backend"]), "runtime_module", a["backend"])
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    before = _status_mb("VmRSS")
    sessions = [get_backend(a["backend"]).load(Artifact(Path(a["path"]), a["backend"], a["options"]), job["threads"]) for a in job["artifacts"]]
    timing = job.get("timing", "call")
    start = snapshot()
    per_session = time_interleaved(sessions, feeds, job["warmup"], job["iterations"], job["duration_s"], job["rounds"], timing)
    machine = assess(start, snapshot(), job["threads"], round_spread(per_session, job["rounds"])).as_dict()
    peak = _status_mb("VmHWM")
    results = []
    for times in per_session:
        stats: dict[str, Any] = dict(summarize(times, job["batch"], job["threads"], job["warmup"]))
        stats.update(peak_rss_mb=peak, model_memory_mb=max(0.0, peak - before), timing=timing, machine=machine)
        if job.get("raw"):
            stats["times_ms"] = [t * 1e3 for t in times]
        results.append(stats)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
