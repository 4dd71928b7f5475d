"""How often does a latency gate cry wolf, and does it still catch a real slowdown?

    python benchmarks/gate_noise.py                 # digits CNN and MobileNetV2, 10 repeats per cell
    python benchmarks/gate_noise.py --repeats 4 --models digits

Two gates judge "is the candidate more than 10% slower than the baseline?":
- edgesmith's: ``edgesmith check``'s latency rule — baseline and candidate artifacts timed interleaved
  in one process (20 rounds x 10, order alternating), block-bootstrap 95% interval of the ratio;
  fail only when the whole interval is above 1.10, inconclusive when it straddles 1.10;
- the hand-written one teams use: benchmark the baseline, then the candidate (100 runs each, each in its
  own process, as a bench script does), fail when the p50 ratio exceeds 1.10.
Scenarios: identical artifacts (any failure is false) and a real slowdown (the FP32 model as the
candidate against the INT8 baseline). Conditions: the machine as it is, and with a background process
that loads one of the two cores on and off at random (a shared CI runner).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from int8_speedup import edgesmith_build  # noqa: E402

TOL = 1.10
THREADS = 2


def _burn(stop: mp.synchronize.Event, seed: int) -> None:
    rnd = random.Random(seed)
    while not stop.is_set():
        end = time.perf_counter() + rnd.uniform(0.1, 0.8)
        if rnd.random() < 0.5:
            while time.perf_counter() < end:
                pass
        else:
            time.sleep(end - time.perf_counter())


def gates(base, cand, feeds) -> tuple[str, float, str, float]:
    from edgesmith.gate.noise import latency_status
    from edgesmith.runtime.bench import benchmark
    from edgesmith.runtime.compare import compare

    c = compare(base, cand, feeds, THREADS, rounds=20, per_round=10)
    ours = latency_status(c.ratio, c.low, c.high, TOL)
    a = benchmark(base, feeds, THREADS, warmup=10, iterations=100)
    b = benchmark(cand, feeds, THREADS, warmup=10, iterations=100)
    naive_ratio = b.p50_ms / a.p50_ms
    return ours, c.ratio, ("fail" if naive_ratio > TOL else "pass"), naive_ratio


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--models", default="digits,mobilenet_v2")
    args = ap.parse_args()
    from edgesmith.profiles import load_profile
    from edgesmith.recipe import InputSpec
    from edgesmith.runtime import Artifact, get_backend
    from edgesmith.runtime.bench import make_feeds

    models = {"digits": ("edgesmith.zoo:pretrained_digits_cnn", "digits", [1, 1, 8, 8]), "mobilenet_v2": ("edgesmith.zoo:mobilenet_v2", None, [1, 3, 224, 224])}
    work = Path(tempfile.mkdtemp(prefix="gate-noise-"))
    backend, profile = get_backend("onnxruntime"), load_profile("x86-avx512-vnni-ort")
    rows = []
    try:
        for name in args.models.split(","):
            source, calib, shape = models[name]
            if calib is None:
                rng = np.random.default_rng(0)
                np.savez(work / "random.npz", input=rng.standard_normal((32, *shape[1:])).astype(np.float32))
                calib = str(work / "random.npz")
            fp32, int8 = edgesmith_build(source, work / name, calib, "ptq_int8", "x86-avx512-vnni-ort")
            specs = [InputSpec(name="input", shape=["batch", *shape[1:]])]
            fp32_art = backend.compile(fp32, work / name / "fp32.onnxruntime.onnx", profile, specs, None)
            twin = work / name / "twin.onnxruntime.onnx"
            shutil.copy(int8, twin)
            base = Artifact(int8, "onnxruntime", backend.default_options())
            scenarios = {"identical": Artifact(twin, "onnxruntime", backend.default_options()), "slower (FP32)": fp32_art}
            feeds = make_feeds(specs, 1)
            for loaded in (False, True):
                stop = mp.Event()
                burner = mp.Process(target=_burn, args=(stop, 0), daemon=True) if loaded else None
                if burner:
                    burner.start()
                try:
                    for scen, cand in scenarios.items():
                        res = [gates(base, cand, feeds) for _ in range(args.repeats)]
                        ours = {s: sum(r[0] == s for r in res) for s in ("fail", "inconclusive", "pass")}
                        naive = {s: sum(r[2] == s for r in res) for s in ("fail", "pass")}
                        row = (
                            name,
                            "loaded" if loaded else "quiet",
                            scen,
                            ours,
                            float(np.median([r[1] for r in res])),
                            naive,
                            float(np.median([r[3] for r in res])),
                            float(np.min([r[3] for r in res])),
                            float(np.max([r[3] for r in res])),
                        )
                        rows.append(row)
                        print(
                            f"{name:13s} {row[1]:6s} {scen:14s} edgesmith {ours} (median ratio {row[4]:.3f})  "
                            f"hand-written {naive} (ratio median {row[6]:.3f}, range {row[7]:.3f}-{row[8]:.3f})",
                            flush=True,
                        )
                finally:
                    stop.set()
                    if burner:
                        burner.join(timeout=5)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| model | machine | scenario | edgesmith fail / inconclusive / pass | hand-written fail / pass | hand-written ratio range |")
    print("|---|---|---|---|---|---|")
    for name, cond, scen, ours, _, naive, _, lo, hi in rows:
        print(
            f"| {name} | {cond} | {scen} | {ours['fail']} / {ours['inconclusive']} / {ours['pass']} | {naive['fail']} / {naive['pass']} | {lo:.2f}-{hi:.2f} |"
        )


if __name__ == "__main__":
    main()
