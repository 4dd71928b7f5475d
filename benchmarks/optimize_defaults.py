"""``edgesmith optimize`` with no options against each established tool's *default* call, per model.

    python benchmarks/optimize_defaults.py [MODEL ...]

Models: the zoo's trained BERT-style token encoder (int64 ids, attention mask, positions), the PReLU
two-head CNN, the residual CNN and the MobileNetV2-style CNN (digits; top-1 on the 600 held-out), and
random-weight ``bert_mini`` and ``resnet18`` for speed (fidelity only). Peers, each with its defaults:
ONNX Runtime ``quantize_static(model, out, reader)`` and ``quantize_dynamic(model, out)``, and
``nncf.quantize(model, dataset)`` run on OpenVINO (NNCF's own runtime). For each: output cosine against
the float model: R² of the worst output (1 - relative error², what the built-in profiles judge) and the
share of decisions kept; top-1, and speed-up over FP32 **on the same runtime**; every model of one row
timed interleaved in one child process at batch 1 (each plain API call, numpy in and out, the same clock
for both runtimes). Peers' best settings ride along (ORT static U8S8 per-channel for CNNs; ORT dynamic
MatMul-only and NNCF's transformer type for transformers). A crash is recorded as such. ``optimize``'s
own search time is reported, and its printed claim (speed-up over ORT FP32 with its interval) is checked
against an independent timing: each model alone in its own process with the runtime's plain API
(``benchmarks/plain_timing.py``).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from pathlib import Path

MODELS = {
    "digits_encoder (BERT-style, trained)": "edgesmith.zoo:trained_digits_encoder",
    "digits_prelu_heads (PReLU, 2 heads, trained)": "edgesmith.zoo:trained_digits_prelu_heads",
    "digits_resnet (residual, trained)": "edgesmith.zoo:trained_digits_resnet",
    "digits_mobilenet (depthwise, trained)": "edgesmith.zoo:trained_digits_mobilenet",
    "digits_detector (digit, box and centroid heads, trained)": "edgesmith.zoo:trained_digits_detector",
    "bert_mini (random weights)": "edgesmith.zoo:bert_mini",
    "resnet18 (random weights)": "edgesmith.zoo:resnet18",
    "mobilenet_v2 (random weights)": "edgesmith.zoo:mobilenet_v2",
}


class _Log:
    @contextlib.contextmanager
    def step(self, text):
        t0 = time.time()
        yield
        print(f"    {text} ({time.time() - t0:.1f}s)", file=sys.stderr, flush=True)

    def info(self, text):
        print(f"    {text}", file=sys.stderr, flush=True)


def _defaults(source: str) -> tuple[dict, str]:
    from edgesmith.model_io import import_object

    d = getattr(import_object(source, "model"), "defaults", {})
    return d["data"], d.get("metric", "top1")


def bench_model(label: str, source: str, work: Path) -> list[dict]:
    from edgesmith import pipeline
    from edgesmith.compress.quantize.onnx_common import DatasetReader, onnx_input_names
    from edgesmith.evaluate import run_dataset, task_metrics
    from edgesmith.metrics import fidelity
    from edgesmith.model_io import onnx_input_specs
    from edgesmith.optimize import optimize
    from edgesmith.profiles import load_profile
    from edgesmith.recipe import InputSpec, parse_recipe
    from edgesmith.runtime import Artifact, backend_for_artifact, get_backend
    from edgesmith.runtime.bench import make_feeds, run_worker
    from edgesmith.runtime.compare import bootstrap_ratio

    data, metric = _defaults(source)
    recipe = parse_recipe({"name": "bench", "model": {"source": source}, "data": data, "metric": metric, "targets": ["x86-avx512-vnni-ort"]}, "bench")
    t0 = time.time()
    res = optimize(recipe, Path.cwd(), out_dir=work / "optimize", reporter=_Log())
    search_s = time.time() - t0
    float_path = work / "optimize" / "model.onnx"
    specs = [InputSpec.model_validate(s) for s in onnx_input_specs(float_path)]
    calib, evaluation = pipeline.load_data(recipe, specs, Path.cwd(), True)
    ort_p, ov_p = load_profile("x86-avx512-vnni-ort"), load_profile("x86-avx512-vnni-ov")
    ort, ov = get_backend("onnxruntime"), get_backend("openvino")
    names = onnx_input_names(float_path)
    rows: list[dict] = []

    def peer(name: str, runtime: str, make) -> None:
        row = {"model": label, "method": name, "runtime": runtime}
        try:
            path = make()
            backend, prof = (ort, ort_p) if runtime == "onnxruntime" else (ov, ov_p)
            row["artifact"] = backend.compile(path, work / f"{len(rows)}{backend.artifact_suffix}", prof, specs, calib)
            out = run_dataset(backend.load(row["artifact"], 2), evaluation)
            row.update(fidelity(ref, out))
            row.update(task_metrics(out, evaluation.labels(), metric) if metric == "top1" else {})
        except Exception as exc:  # noqa: BLE001 - a peer's crash is a result
            row["crash"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ''}"
        rows.append(row)

    from edgesmith.runtime.onnxruntime import OrtSession

    ref = run_dataset(OrtSession(float_path, 2, "all"), evaluation)

    def ort_static():
        from onnxruntime.quantization import quantize_static

        quantize_static(str(float_path), str(work / "ort_static.onnx"), DatasetReader(calib, names, calib.num_samples))
        return work / "ort_static.onnx"

    def ort_dynamic():
        from onnxruntime.quantization import quantize_dynamic

        quantize_dynamic(str(float_path), str(work / "ort_dynamic.onnx"))
        return work / "ort_dynamic.onnx"

    def nncf_default():
        import nncf
        import onnx

        samples = [{n: b.inputs[n][i : i + 1] for n in names} for b in calib.batches for i in range(b.size)]
        q = nncf.quantize(onnx.load(str(float_path)), nncf.Dataset(samples))
        onnx.save(q, str(work / "nncf.onnx"))
        return work / "nncf.onnx"

    def ort_static_best():
        from onnxruntime.quantization import QuantType, quantize_static

        out = work / "ort_static_u8s8.onnx"
        quantize_static(
            str(float_path),
            str(out),
            DatasetReader(calib, names, calib.num_samples),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        return out

    def ort_dynamic_matmul():
        from onnxruntime.quantization import quantize_dynamic
        from onnxruntime.quantization.shape_inference import quant_pre_process

        pre, out = work / "ort_pre.onnx", work / "ort_dynamic_matmul.onnx"
        quant_pre_process(str(float_path), str(pre))  # as ORT's documentation recommends before quantizing
        quantize_dynamic(str(pre), str(out), op_types_to_quantize=["MatMul"], per_channel=True)
        return out

    def nncf_transformer():
        import nncf
        import onnx

        samples = [{n: b.inputs[n][i : i + 1] for n in names} for b in calib.batches for i in range(b.size)]
        q = nncf.quantize(onnx.load(str(float_path)), nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER)
        onnx.save(q, str(work / "nncf_transformer.onnx"))
        return work / "nncf_transformer.onnx"

    transformer = res.structure.transformer
    peer("FP32", "onnxruntime", lambda: float_path)
    peer("ORT quantize_static defaults", "onnxruntime", ort_static)
    peer("ORT quantize_dynamic defaults", "onnxruntime", ort_dynamic)
    if transformer:  # the peers' best settings for a transformer
        peer("ORT quantize_dynamic, MatMul only, per-channel (best setting)", "onnxruntime", ort_dynamic_matmul)
    else:
        peer("ORT quantize_static U8S8 per-channel (best setting)", "onnxruntime", ort_static_best)
    peer("FP32", "openvino", lambda: float_path)
    peer("NNCF quantize defaults", "openvino", nncf_default)
    if transformer:
        peer("NNCF quantize, model_type=TRANSFORMER (best setting)", "openvino", nncf_transformer)
    m = (work / "optimize" / "manifest.json").read_text()
    import json

    bundle = next(iter(json.loads(m)["targets"].values()))["bundle"]
    art_path = work / "optimize" / bundle["artifact"]
    win = {
        "model": label,
        "method": f"edgesmith optimize -> {res.winner.plan.name}",
        "runtime": backend_for_artifact(art_path),
        "artifact": Artifact(art_path, backend_for_artifact(art_path), bundle["artifact_options"]),
        "search_s": search_s,
        "claim": (res.winner.speedup, res.winner.low, res.winner.high),
        "busy": res.claims_withheld,
    }
    out = run_dataset(get_backend(win["runtime"]).load(win["artifact"], 2), evaluation)
    win.update(fidelity(ref, out))
    win.update(task_metrics(out, evaluation.labels(), metric) if metric == "top1" else {})
    rows.append(win)

    timed = [r for r in rows if "artifact" in r]
    rounds, per_round = 12, 10
    feeds = make_feeds(specs, 1, evaluation.first(1))
    results = run_worker([r["artifact"] for r in timed], feeds, 2, 10, rounds * per_round, None, rounds, raw=True)
    split = lambda t: [t[i * per_round : (i + 1) * per_round] for i in range(rounds)]  # noqa: E731
    fp32 = {r["runtime"]: res_ for r, res_ in zip(timed, results) if r["method"] == "FP32"}
    for r, res_ in zip(timed, results):
        r["p50_ms"] = res_["p50_ms"]
        r["speedup"], r["low"], r["high"] = bootstrap_ratio(split(res_["times_ms"]), split(fp32[r["runtime"]]["times_ms"]))
        r["vs_ort_fp32"] = bootstrap_ratio(split(res_["times_ms"]), split(fp32["onnxruntime"]["times_ms"]))[0]
    # optimize's printed claim (speed-up over ORT FP32) against each model timed alone with its plain API
    from benchmarks.plain_timing import plain_ratio

    ort_fp32 = next(r for r in timed if r["method"] == "FP32" and r["runtime"] == "onnxruntime")
    win["plain"] = plain_ratio(ort_fp32["artifact"].path, win["artifact"].path, feeds)
    return rows


def main() -> None:
    import torch

    torch.set_num_threads(2)
    wanted = sys.argv[1:]
    print(
        "| model | method | runtime | top-1 | R² (worst output) | decisions kept | speed-up over FP32, same runtime (95% CI) "
        "| vs ORT FP32 | p50 ms | optimize's claim vs ORT FP32 -> plain timing |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, source) in enumerate(MODELS.items()):
            if wanted and not any(w in label for w in wanted):
                continue
            print(f"{label}", file=sys.stderr, flush=True)
            for r in bench_model(label, source, Path(tmp) / str(i)):
                print(_row(r), flush=True)


def _row(r: dict) -> str:
    if "crash" in r:
        return f"| {r['model']} | {r['method']} | {r['runtime']} | — | — | — | crashed: {r['crash']} | — | — | |"
    top1 = f"{r['top1']:.2f}" if "top1" in r else "—"
    extra = f" (search {r['search_s']:.0f} s)" if "search_s" in r else ""
    agree = f"{r['decision_agreement']:.3f}" if "decision_agreement" in r else "—"
    check = ""
    if "claim" in r:
        sp, low, high = r["claim"]
        if r.get("busy") or low is None:
            check = f"withheld (busy machine) -> plain {r['plain']:.2f}x"
        else:
            ok = "inside" if low <= r["plain"] <= high else "OUTSIDE"
            check = f"{sp:.2f}x ({low:.2f}-{high:.2f}) -> plain {r['plain']:.2f}x, {ok}"
    return (
        f"| {r['model']} | {r['method']}{extra} | {r['runtime']} | {top1} | {r['output_fidelity']:.4f} | {agree} | "
        f"{r['speedup']:.2f}x ({r['low']:.2f}-{r['high']:.2f}) | {r['vs_ort_fp32']:.2f}x | {r['p50_ms']:.3f} | {check} |"
    )


if __name__ == "__main__":
    main()
