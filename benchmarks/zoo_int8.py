"""INT8 accuracy and speed on the zoo's trained models, per quantizer, through the real pipeline.

    python benchmarks/zoo_int8.py

For the digits CNN (8x8) and the ResNet- and MobileNetV2-style digits32 models (trained and cached by
``edgesmith zoo train``): ONNX Runtime's ``quantize_static`` defaults (int8 activations, per-tensor
weights, min-max: ``ptq_int8`` with those settings), edgesmith ``ptq_int8`` on ONNX Runtime
(x86-avx512-vnni-ort), Intel Neural Compressor's PyTorch API (``inc_ptq``) run on ONNX Runtime, ``nncf_ptq`` on
OpenVINO (x86-avx512-vnni-ov), and ``fold_bn`` + 4-bit ``gpfq`` weights + ``ptq_int8``: top-1 on the 600
held-out digits against the float model, cosine, speed-up over FP32 at batch 1 and 8 on the same
runtime (timed interleaved), and the whole run's wall time (export, quantization, validation).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def main() -> None:
    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe

    models = {
        "digits_cnn": ("edgesmith.zoo:pretrained_digits_cnn", "digits"),
        "digits_resnet": ("edgesmith.zoo:trained_digits_resnet", "digits32"),
        "digits_mobilenet": ("edgesmith.zoo:trained_digits_mobilenet", "digits32"),
    }
    variants = {
        "ORT quantize_static defaults (S8S8 per-tensor)": ([{"type": "ptq_int8", "activation_type": "int8", "per_channel": False}], "x86-avx512-vnni-ort"),
        "ptq_int8 (ORT)": ([{"type": "ptq_int8"}], "x86-avx512-vnni-ort"),
        "inc_ptq (Neural Compressor -> ORT)": ([{"type": "inc_ptq"}], "x86-avx512-vnni-ort"),
        "nncf_ptq (OpenVINO)": ([{"type": "nncf_ptq"}], "x86-avx512-vnni-ov"),
        "fold_bn + gpfq 4-bit + ptq_int8 (ORT)": ([{"type": "fold_bn"}, {"type": "gpfq", "bits": 4}, {"type": "ptq_int8"}], "x86-avx512-vnni-ort"),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (source, data) in models.items():
            for label, (passes, target) in variants.items():
                recipe = parse_recipe(
                    {
                        "name": f"{name}-{label}",
                        "model": {"source": source},
                        "data": {"calibration": {"source": data, "split": "train", "samples": 256}, "evaluation": {"source": data, "split": "test"}},
                        "passes": passes,
                        "targets": [target],
                        "bench": {"iterations": 200},
                        "output_dir": str(Path(tmp) / name / str(len(rows))),
                    },
                    "bench",
                )
                t0 = time.perf_counter()
                res = pipeline.run(recipe, Path(tmp))
                took = time.perf_counter() - t0
                t = res.manifest["targets"][target]
                m, ref = t["metrics"], t["reference_metrics"]
                rows.append((name, label, ref["top1"], m["top1"], m["cosine"], m["speedup_vs_fp32@1"], m["speedup_vs_fp32@8"], took))
                print(
                    f"{name:17s} {label:48s} top-1 {ref['top1']:.2f} -> {m['top1']:.2f}  cosine {m['cosine']:.4f}  "
                    f"speed-up b1 {m['speedup_vs_fp32@1']:.2f}x b8 {m['speedup_vs_fp32@8']:.2f}x  ({took:.0f} s)",
                    flush=True,
                )
    print("\n| model | quantizer | float top-1 | INT8 top-1 | drop (pt) | cosine | speed-up b1 | speed-up b8 | run wall time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, label, f, q, cos, s1, s8, took in rows:
        print(f"| {name} | {label} | {f:.2f} | {q:.2f} | {f - q:+.2f} | {cos:.4f} | {s1:.2f}x | {s8:.2f}x | {took:.0f} s |")


if __name__ == "__main__":
    main()
