"""Independent timing of a model the way a plain application runs it: the runtime's own API in a loop,
one model per process, nothing of edgesmith imported. What optimize's printed speed-ups are checked against.

    python benchmarks/plain_timing.py MODEL.onnx|MODEL.xml FEEDS.npz [ITERATIONS]

prints the median seconds per call. ``plain_ratio(a, b, feeds)`` alternates processes of A and B three
times and takes the fastest median of each (a process's median drifted by up to 1.7x between identical
runs on a 2-core machine), returning median(A) / median(B): B's speed-up over A.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

THREADS = 2


def _main() -> None:
    import time

    import numpy as np

    path, feeds_path = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    with np.load(feeds_path) as npz:
        feeds = {k: npz[k] for k in npz.files}
    if path.endswith(".onnx"):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = THREADS, 1
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        call = lambda: s.run(None, feeds)  # noqa: E731
    else:
        import openvino as ov

        c = ov.Core().compile_model(path, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": THREADS, "INFERENCE_PRECISION_HINT": "f32"})
        call = lambda: c(feeds)  # noqa: E731
    deadline = time.perf_counter() + 0.5
    while time.perf_counter() < deadline:  # warm-up: half a second
        call()
    times = []
    budget = time.perf_counter() + 5.0  # a large model: at most 5 s of timed calls
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
        if t0 > budget:
            break
    print(json.dumps(float(np.median(times))))


def plain_median_s(model: Path, feeds_npz: Path, iterations: int = 2000) -> float:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(model), str(feeds_npz), str(iterations)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def plain_ratio(a: Path, b: Path, feeds: dict, iterations: int = 2000, repeats: int = 3) -> float:
    """B's speed-up over A (median A / median B), each timed alone with its plain API, alternated ``repeats`` times."""
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "feeds.npz"
        np.savez(npz, **feeds)
        runs = [(plain_median_s(a, npz, iterations), plain_median_s(b, npz, iterations)) for _ in range(repeats)]
    return min(r[0] for r in runs) / min(r[1] for r in runs)


if __name__ == "__main__":
    _main()
