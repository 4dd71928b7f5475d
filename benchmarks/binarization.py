"""Binary networks end to end (issue 15): whole models FP32 vs INT8 vs binary, the custom-op route's
per-call overhead, and MST-compression's operation counts and wall time.

    python benchmarks/binarization.py [models|route|mst ...]

- models: the bundled digits CNN (8x8) and the trained digits ResNet (32x32): FP32, INT8 (auto_int8) and
  binary (binarize with distillation recovery, then pack_binary: bit-packed edgesmith.BinaryConv run by the
  compiled kernel), plus the binary model in its standard-op lowering; top-1 on the held-out digits, ONNX
  size, latency at batch 1 and 32 on ONNX Runtime, timed interleaved in one child (plain calls).
- route: what a call through onnxruntime-extensions' Python op body costs on top of the kernel itself.
- mst: MST operation counts on the trained binary layers without and with the regulariser, and wall time
  of one layer: the direct kernel (AVX-512, portable) against the word-level tree kernel (POPCNT, portable).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODELS = {
    "digits CNN (8x8, bundled)": ("edgesmith.zoo:pretrained_digits_cnn", "digits", 8, 1),
    "digits ResNet (32x32, trained)": ("edgesmith.zoo:trained_digits_resnet", "digits32", 32, 1),
}
RECOVER = {"loss": "kd", "alpha": 0.5, "temperature": 4.0, "epochs": 30, "eval_every": 20, "lr": 0.005}


def _run(work: Path, name: str, source: str, data: str, passes: list) -> dict:
    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe

    r = parse_recipe(
        {
            "name": name,
            "model": {"source": source},
            "passes": passes,
            "output_dir": str(work / name),
            "data": {"calibration": {"source": data, "split": "train"}, "evaluation": {"source": data, "split": "test"}},
            "targets": [
                {"profile": p, "batch_sizes": [1, 32], "budgets": [{"metric": "speedup_vs_fp32", "goal": "min", "value": 0.0, "batch": 1}]}
                for p in ("x86-avx512-vnni-ort", "x86-avx512-vnni-ov")
            ],
        },
        "bench",
    )
    t0 = time.time()
    pipeline.run(r, work, force=True)
    m = json.loads((work / name / "manifest.json").read_text())
    m["_dir"], m["_s"] = work / name, time.time() - t0
    return m


def models(work: Path) -> None:
    from edgesmith.profiles import load_profile
    from edgesmith.runtime import Artifact, get_backend
    from edgesmith.runtime.bench import make_feeds, run_worker
    from edgesmith.runtime.custom_ops import lower_file
    from edgesmith.schema import InputSpec

    print("\n### Whole models: FP32 vs INT8 vs binary, per runtime (2 threads, each runtime's variants interleaved in one child)\n")
    print("| model | runtime | variant | top-1 | ONNX bytes | p50 batch 1 | p50 batch 32 |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for label, (src, data, size, ch) in MODELS.items():
        runs = {
            "FP32": _run(work, f"{data}-fp32", src, data, []),
            "INT8 (auto_int8)": _run(work, f"{data}-int8", src, data, [{"type": "auto_int8"}]),
            "binary, packed (kernel)": _run(work, f"{data}-bin", src, data, [{"type": "binarize", "recover": RECOVER}, {"type": "pack_binary"}]),
        }
        binm = runs["binary, packed (kernel)"]
        lowered = work / f"{data}-bin" / "lowered.onnx"
        lower_file(binm["_dir"] / "x86-avx512-vnni-ort" / "model.binary.onnx", lowered)
        for target in ("x86-avx512-vnni-ort", "x86-avx512-vnni-ov"):
            prof = load_profile(target)
            backend = get_backend(prof.backend)
            arts, tops, sizes = [], {}, {}
            for k, m in runs.items():
                t = m["targets"][target]
                arts.append(Artifact(m["_dir"] / t["bundle"]["artifact"], prof.backend, t["bundle"]["artifact_options"]))
                tops[k] = t["metrics"]["top1"]
                onnx_file = [a for a in t["artifacts"] if a["path"].endswith(".onnx") and prof.backend not in a["path"]]
                sizes[k] = int((m["_dir"] / onnx_file[0]["path"]).stat().st_size) if onnx_file else int((m["_dir"] / "model.onnx").stat().st_size)
            arts.append(backend.compile(lowered, work / f"{data}-lowered-{target}{backend.artifact_suffix}", prof))
            tops["binary, lowered (standard ops)"], sizes["binary, lowered (standard ops)"] = tops["binary, packed (kernel)"], lowered.stat().st_size
            names = list(runs) + ["binary, lowered (standard ops)"]
            p50 = {}
            for batch in (1, 32):
                feeds = make_feeds([InputSpec(name="input", shape=["batch", ch, size, size])], batch)
                for k, r in zip(names, run_worker(arts, feeds, 2, 10, 120, None, 12, raw=True)):
                    p50[(k, batch)] = r["p50_ms"]
            for k in names:
                print(f"| {label} | {prof.backend} | {k} | {tops[k]:.2f} | {sizes[k]:,} | {p50[(k, 1)]:.3f} ms | {p50[(k, 32)]:.3f} ms |", flush=True)


def route(work: Path) -> None:  # noqa: ARG001
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgesmith.compress.pack_binary import pack
    from edgesmith.runtime.custom_ops import apply_registrations
    from edgesmith.runtime.kernels import binary as B

    print("\n### The custom-op route's per-call overhead (one binary conv, 64 -> 64, 3x3, 8x8, batch 1)\n")
    rng = np.random.default_rng(0)
    w = np.where(rng.standard_normal((64, 64, 3, 3)) >= 0, 0.5, -0.5).astype(np.float32)
    g = helper.make_graph(
        [
            helper.make_node("GreaterOrEqual", ["x", "beta"], ["ge"]),
            helper.make_node("Where", ["ge", "one", "minus"], ["s"]),
            helper.make_node("Conv", ["s", "w", "b"], ["y"], pads=[1, 1, 1, 1]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(np.zeros((1, 64, 1, 1), np.float32), "beta"),
            numpy_helper.from_array(np.float32(1.0), "one"),
            numpy_helper.from_array(np.float32(-1.0), "minus"),
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(np.zeros(64, np.float32), "b"),
        ],
    )
    std = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    packed, _ = pack(std)
    path = Path(tempfile.mkdtemp()) / "p.onnx"
    onnx.save(packed, str(path))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    apply_registrations("onnxruntime", so, path)
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    layer = B.BinaryConv2d(np.sign(w), padding=(1, 1), threads=2)
    x = rng.standard_normal((1, 64, 8, 8)).astype(np.float32)

    def t(f, n=2000):
        for _ in range(200):
            f()
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts)) * 1e6

    via_ort, kernel = t(lambda: sess.run(None, {"x": x})), t(lambda: layer(x))
    print(
        f"- through ONNX Runtime + onnxruntime-extensions' Python op: {via_ort:.1f} us per call; the kernel called directly "
        f"(sign, pack, conv): {kernel:.1f} us; the route adds {via_ort - kernel:.1f} us per binary layer"
    )


def mst(work: Path) -> None:
    import torch

    from edgesmith.compress import build_pass_config, get_pass
    from edgesmith.compress.mst import build_tree, op_counts, sign_rows
    from edgesmith.compress.registry import PassContext
    from edgesmith.data.digits import load_digits_split
    from edgesmith.data.sources import load_dataset
    from edgesmith.runtime.kernels import binary as B
    from edgesmith.schema import InputSpec
    from edgesmith.zoo import pretrained_digits_cnn

    print("\n### MST-compression on the digits CNN's trained binary convs (300 recovery steps each)\n")
    print(
        "| regulariser λ | top-1 | layer | bit ops direct -> tree (fewer) | word ops direct -> tree (fewer) | direct AVX-512 | direct portable | tree, POPCNT | tree, portable |"
    )
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    spec = (InputSpec(name="input", shape=["batch", 1, 8, 8], dtype="float32"),)
    data = load_dataset("digits", spec, role="calibration", split="train")
    x_test, y_test = load_digits_split("test")
    for lam in (0.0, 0.002, 0.01, 0.05):
        torch.manual_seed(0)
        ctx = PassContext(work_dir=work, input_specs=spec, calibration=data)
        cfg = build_pass_config("binarize", {"mst_regularizer": lam, "recover": {"steps": 300, "eval_every": 50, "alpha": 0.5, "lr": 0.005, "seed": 0}})
        model = get_pass("binarize").apply(pretrained_digits_cnn(), cfg, ctx)
        with torch.no_grad():
            top1 = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()) * 100
        for name in ctx.details["binarize"]["mst_ops"]:
            conv = dict(model.named_modules())[name].layer
            w = conv.weight.detach().numpy()
            rows = sign_rows(w)
            tree = build_tree(rows)
            ops = op_counts(rows, tree)
            x = np.random.default_rng(0).standard_normal((64, w.shape[1], 8 if w.shape[1] == 32 else 4, 8 if w.shape[1] == 32 else 4)).astype(np.float32)
            layers = {
                "direct avx512": B.BinaryConv2d(np.sign(w) + (w == 0), padding=(1, 1), threads=2, impl="avx512"),
                "direct portable": B.BinaryConv2d(np.sign(w) + (w == 0), padding=(1, 1), threads=2, impl="portable"),
                "tree popcnt": B.TreeConv2d(np.sign(w) + (w == 0), tree.parent, tree.order, padding=(1, 1), threads=2, impl="auto"),
                "tree portable": B.TreeConv2d(np.sign(w) + (w == 0), tree.parent, tree.order, padding=(1, 1), threads=2, impl="portable"),
            }
            times = {k: [] for k in layers}
            for _ in range(10):
                for k, f in layers.items():
                    f(x)
                    for _ in range(5):
                        t0 = time.perf_counter()
                        f(x)
                        times[k].append(time.perf_counter() - t0)
            med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
            print(
                f"| {lam:g} | {top1:.2f} | {name} ({w.shape[1]}->{w.shape[0]}) | {ops['direct_bits']:,} -> {ops['tree_bits']:,} "
                f"({1 - ops['tree_bits'] / ops['direct_bits']:.0%}) | {ops['direct_words']} -> {ops['tree_words']} ({1 - ops['tree_words'] / ops['direct_words']:.0%}) | "
                f"{med['direct avx512']:.3f} ms | {med['direct portable']:.3f} ms | {med['tree popcnt']:.3f} ms | {med['tree portable']:.3f} ms |",
                flush=True,
            )


def main() -> None:
    import torch

    torch.set_num_threads(2)
    wanted = sys.argv[1:] or ["models", "route", "mst"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in wanted:
            print(f"{name} ...", file=sys.stderr, flush=True)
            globals()[name](Path(tmp))


if __name__ == "__main__":
    main()
