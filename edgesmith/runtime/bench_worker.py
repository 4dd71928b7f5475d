"""Child process of ``runtime.bench.benchmark``: loads one artifact, times it, prints JSON."""

from __future__ import annotations

import importlib
import json
import resource
import sys
from pathlib import Path


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


def main() -> None:
    job = json.loads(sys.stdin.read())
    import numpy as np

    from edgesmith.runtime import Artifact, get_backend
    from edgesmith.runtime.bench import summarize, time_session

    backend = get_backend(job["backend"])
    with np.load(job["feeds"], allow_pickle=False) as npz:
        feeds = {k: npz[k] for k in npz.files}
    # NOTE: import the runtime library before the baseline so model memory excludes the library itself
    importlib.import_module(job["backend"])
    before = _status_mb("VmRSS")
    session = backend.load(Artifact(Path(job["path"]), job["backend"], job["options"]), job["threads"])
    times = time_session(session, feeds, job["warmup"], job["iterations"], job["duration_s"])
    peak = _status_mb("VmHWM")
    stats = summarize(times, job["batch"], job["threads"], job["warmup"])
    stats.update(peak_rss_mb=peak, model_memory_mb=max(0.0, peak - before))
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
