"""INT8 speed-up per runtime (CPU): FP32 vs the runtime's quantizer defaults vs edgesmith INT8.

    python benchmarks/int8_speedup.py            # ResNet-18, MobileNetV2 (224x224), the digits CNN; batch 1 and 8
    python benchmarks/int8_speedup.py --quick    # fewer rounds

ONNX Runtime: ORT FP32, ORT ``quantize_static`` with no options, edgesmith ``ptq_int8`` (compiled for
the x86-avx512-vnni-ort profile). OpenVINO: OV FP32 (IR, f32), edgesmith ``ptq_int8`` and ``nncf_ptq``
IRs (compiled for x86-avx512-vnni-ov). All variants of a model run in one process, interleaved in
rounds by edgesmith's own timing loop (inputs bound once), so drift on a noisy machine hits them alike;
figures are ratios of medians against FP32 on the same runtime (and against ORT FP32).
ResNet-18 and MobileNetV2 have random weights (speed only; calibrated on random normal data). The digits CNN is the
bundled trained model, calibrated on real digits, and its top-1 is reported too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

THREADS = 2


def ort_session(path: Path, level: str = "all"):
    from edgesmith.runtime.onnxruntime import OrtSession

    return OrtSession(path, THREADS, level)


def ov_session(path: Path):
    from edgesmith.runtime import get_backend

    backend = get_backend("openvino")
    return backend.load(__import__("edgesmith.runtime", fromlist=["Artifact"]).Artifact(path, "openvino", backend.default_options()), THREADS)


def edgesmith_build(model: str, work: Path, calib: str, pass_type: str, target: str) -> tuple[Path, Path]:
    """The float ONNX and edgesmith's compiled INT8 artifact for ``target``, through the real pipeline."""
    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe

    recipe = parse_recipe(
        {
            "name": f"bench-{model}",
            "model": {"source": model},
            "data": {"calibration": {"source": calib, "samples": 64, "batch_size": 8}, "evaluation": None},
            "passes": [{"type": pass_type}],
            "targets": [target],
            "stop_after": "compile",
            "output_dir": str(work),
        }
    )
    pipeline.run(recipe, work)
    suffix = ".openvino.xml" if target.endswith("-ov") else ".onnxruntime.onnx"
    return work / "model.onnx", work / target / f"model{suffix}"


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
    from edgesmith.runtime.bench import time_interleaved

    times = time_interleaved(list(sessions.values()), feeds, warmup=5, iterations=rounds * per_round, duration_s=None, rounds=rounds)
    return {k: float(np.median(t)) * 1e3 for k, t in zip(sessions, times)}


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
    parser.add_argument("--models", nargs="*", default=["resnet18", "mobilenet_v2", "digits"])
    args = parser.parse_args()
    rounds, per_round = (3, 10) if args.quick else (7, 20)

    work = Path(tempfile.mkdtemp(prefix="edgesmith-bench-"))
    rng = np.random.default_rng(0)
    np.savez(work / "random224.npz", input=rng.standard_normal((64, 3, 224, 224)).astype(np.float32))
    cases = {
        "resnet18": ("edgesmith.zoo:resnet18", str(work / "random224.npz"), (3, 224, 224)),
        "mobilenet_v2": ("edgesmith.zoo:mobilenet_v2", str(work / "random224.npz"), (3, 224, 224)),
        "digits": ("edgesmith.zoo:pretrained_digits_cnn", "digits", (1, 8, 8)),
    }
    import onnxruntime as ort

    print(f"# int8_speedup: onnxruntime {ort.__version__}, {THREADS} threads, {rounds} rounds x {per_round} runs per variant", file=sys.stderr)
    rows = []
    for key in args.models:
        model, calib, shape = cases[key]
        fp32, ours_ort = edgesmith_build(model, work / f"{key}-ort", calib, "ptq_int8", "x86-avx512-vnni-ort")
        _, ours_ov = edgesmith_build(model, work / f"{key}-ov", calib, "ptq_int8", "x86-avx512-vnni-ov")
        _, ours_nncf = edgesmith_build(model, work / f"{key}-nncf", calib, "nncf_ptq", "x86-avx512-vnni-ov")
        from edgesmith.profiles import load_profile
        from edgesmith.runtime import get_backend

        ov_fp32 = get_backend("openvino").compile(fp32, work / f"{key}-ov" / "fp32.xml", load_profile("x86-avx512-vnni-ov")).path
        default = ort_default_static(fp32, work / f"{key}-ort" / "ort_default_static.onnx", calib_batches(model, calib))
        sessions = {
            "ORT FP32": ort_session(fp32),
            "ORT quantize_static defaults": ort_session(default),
            "edgesmith INT8 (ORT)": ort_session(ours_ort),
            "OV FP32": ov_session(ov_fp32),
            "edgesmith INT8 ptq_int8 (OV)": ov_session(ours_ov),
            "edgesmith INT8 nncf_ptq (OV)": ov_session(ours_nncf),
        }
        for batch in (1, 8):
            if key == "digits":
                from edgesmith.data.digits import load_digits_split

                x = load_digits_split("test")[0][:batch]
            else:
                x = rng.standard_normal((batch, *shape)).astype(np.float32)
            med = timed(sessions, {"input": x}, rounds, per_round)
            for name, ms in med.items():
                same = med["OV FP32"] if "OV" in name else med["ORT FP32"]
                rows.append((key, batch, name, ms, same / ms, med["ORT FP32"] / ms))
        if key == "digits":
            from edgesmith.data.digits import load_digits_split

            xt, yt = load_digits_split("test")
            for name, s in sessions.items():
                acc = (s.run({"input": xt})[0].argmax(1) == yt).mean() * 100
                print(f"digits top-1 {name}: {acc:.2f}%", file=sys.stderr)

    print("| model | batch | variant | median ms | speed-up vs FP32 on its runtime | vs ORT FP32 |")
    print("|---|---|---|---|---|---|")
    for key, batch, name, ms, same, vs_ort in rows:
        print(f"| {key} | {batch} | {name} | {ms:.3f} | {same:.2f}x | {vs_ort:.2f}x |")


if __name__ == "__main__":
    main()
