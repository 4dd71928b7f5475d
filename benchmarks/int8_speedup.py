"""INT8 speed-up on ONNX Runtime (CPU): ORT FP32 vs ORT quantize_static defaults vs edgesmith INT8.

    python benchmarks/int8_speedup.py            # ResNet-18 (224x224) and the digits CNN, batch 1 and 8
    python benchmarks/int8_speedup.py --quick    # fewer rounds

All variants are measured in one process, interleaved in rounds (each round times every variant),
so drift on a noisy machine hits them alike; the figure is the ratio of medians against ORT FP32.
ResNet-18 has random weights (speed only; calibrated on random normal data). The digits CNN is the
bundled trained model, calibrated on real digits, and its top-1 is reported too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

THREADS = 2


def ort_session(path: Path, level: str = "all"):
    from edgesmith.runtime.onnxruntime import OrtSession

    return OrtSession(path, THREADS, level)


def edgesmith_int8(model: str, work: Path, calib: str) -> tuple[Path, Path]:
    """The float ONNX and edgesmith's compiled INT8 artifact, through the real pipeline."""
    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe

    recipe = parse_recipe({
        "name": f"bench-{model}", "model": {"source": model},
        "data": {"calibration": {"source": calib, "samples": 64, "batch_size": 8}, "evaluation": None},
        "passes": [{"type": "ptq_int8"}], "targets": ["x86-avx512-vnni-ort"], "stop_after": "compile",
        "output_dir": str(work),
    })
    pipeline.run(recipe, work)
    return work / "model.onnx", work / "x86-avx512-vnni-ort" / "model.onnxruntime.onnx"


def ort_default_static(fp32: Path, out: Path, calib_batches: list[dict]) -> Path:
    """quantize_static exactly as its documentation's minimal call: no options."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib_batches)

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(fp32), str(out), Reader())
    return out


def timed(sessions: dict, feeds: dict, rounds: int, per_round: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        for _ in range(5):
            s.run(feeds)
    for _ in range(rounds):
        for name, s in sessions.items():
            for _ in range(per_round):
                t0 = time.perf_counter()
                s.run(feeds)
                times[name].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


def calib_batches(model: str, calib: str) -> list[dict]:
    from edgesmith.data import load_dataset
    from edgesmith.model_io import import_object
    from edgesmith.recipe import InputSpec

    specs = [InputSpec.model_validate(s) for s in import_object(model, "model").input_spec]
    ds = load_dataset(calib, specs, role="calibration", samples=64, batch_size=8)
    return [b.inputs for b in ds.batches]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--models", nargs="*", default=["resnet18", "digits"])
    args = parser.parse_args()
    rounds, per_round = (3, 10) if args.quick else (7, 20)

    work = Path(tempfile.mkdtemp(prefix="edgesmith-bench-"))
    rng = np.random.default_rng(0)
    np.savez(work / "random224.npz", input=rng.standard_normal((64, 3, 224, 224)).astype(np.float32))
    cases = {
        "resnet18": ("edgesmith.zoo:resnet18", str(work / "random224.npz"), (3, 224, 224)),
        "digits": ("edgesmith.zoo:pretrained_digits_cnn", "digits", (1, 8, 8)),
    }
    import onnxruntime as ort

    print(f"# int8_speedup: onnxruntime {ort.__version__}, {THREADS} threads, {rounds} rounds x {per_round} runs per variant", file=sys.stderr)
    rows = []
    for key in args.models:
        model, calib, shape = cases[key]
        fp32, ours = edgesmith_int8(model, work / key, calib)
        default = ort_default_static(fp32, work / key / "ort_default_static.onnx", calib_batches(model, calib))
        sessions = {"ORT FP32": ort_session(fp32), "ORT quantize_static defaults": ort_session(default),
                    "edgesmith INT8": ort_session(ours, "disable")}
        for batch in (1, 8):
            if key == "digits":
                from edgesmith.data.digits import load_digits_split

                x = load_digits_split("test")[0][:batch]
            else:
                x = rng.standard_normal((batch, *shape)).astype(np.float32)
            med = timed(sessions, {"input": x}, rounds, per_round)
            base = med["ORT FP32"]
            for name, ms in med.items():
                rows.append((key, batch, name, ms, base / ms))
        if key == "digits":
            from edgesmith.data.digits import load_digits_split

            xt, yt = load_digits_split("test")
            for name, s in sessions.items():
                acc = (s.run({"input": xt})[0].argmax(1) == yt).mean() * 100
                print(f"digits top-1 {name}: {acc:.2f}%", file=sys.stderr)

    print("| model | batch | variant | median ms | speed-up vs ORT FP32 |")
    print("|---|---|---|---|---|")
    for key, batch, name, ms, ratio in rows:
        print(f"| {key} | {batch} | {name} | {ms:.3f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
