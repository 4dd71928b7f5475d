"""Pruning that pays, measured: what each pruning pass buys on this machine, through `edgesmith`'s own pipeline.

    python benchmarks/pruning.py [channels|sparse|subnetwork|int8|ovsparse ...]

- channels: 50% channel pruning (L1, round to 8) of the trained digits ResNet and MobileNetV2 (accuracy on
  the 600 held-out digits, without and with distillation recovery) and of the random-weight 224x224
  resnet18 / mobilenet_v2 (speed only); latency of the pruned model against the dense one on ONNX Runtime
  and OpenVINO, timed interleaved in one child at batch 1 (the run's speedup_vs_fp32: dense FP32 over
  pruned FP32, 95% interval).
- sparse: 80% unstructured magnitude sparsity of the trained digits ResNet, one-shot and gradual with
  recovery: deflated download size against the dense model, accuracy.
- subnetwork: a 50% Edge-Popup subnetwork of a randomly initialised digits CNN, with and without weight
  recycling (3 seeds), against the trained dense CNN.
- int8: 50% channels + INT8 against dense INT8 on the same runtime (the speed-ups should multiply).
- graph: TEDDY's degree-based edge dropping vs random dropping on a GCN over the digits kNN graph.
- ovsparse: does OpenVINO's sparse-weight decompression (CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE) speed up an
  80%-sparse INT8 transformer's linear layers on this CPU?
Ratios come from one run each; the machine record of every timing is checked (a busy one is said).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

DIGITS32 = {"calibration": {"source": "digits32", "split": "train"}, "evaluation": {"source": "digits32", "split": "test"}}
DIGITS8 = {"calibration": {"source": "digits", "split": "train"}, "evaluation": {"source": "digits", "split": "test"}}
TARGETS = ["x86-avx512-vnni-ort", "x86-avx512-vnni-ov"]
RECOVER = {"loss": "kd", "alpha": 0.5, "temperature": 4.0, "epochs": 30, "eval_every": 20, "patience": 10}


def _run(work: Path, name: str, source: str, passes: list, data: dict | None, targets=TARGETS) -> dict:
    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe

    spec = {
        "name": name,
        "model": {"source": source},
        "passes": passes,
        "output_dir": str(work / name),
        "targets": [{"profile": t, "budgets": [{"metric": "speedup_vs_fp32", "goal": "min", "value": 0.0, "batch": 1}]} for t in targets],
    }
    if data is None:  # the zoo factory's own data (seeded random images or tokens for the speed models)
        from edgesmith.model_io import import_object

        defaults = getattr(import_object(source, "model"), "defaults", {})
        data = defaults.get("data")
        if defaults.get("metric"):
            spec["metric"] = defaults["metric"]
    if data is not None:
        spec["data"] = data
    t0 = time.time()
    pipeline.run(parse_recipe(spec, "bench"), work, force=True)
    m = json.loads((work / name / "manifest.json").read_text())
    m["_seconds"] = time.time() - t0
    m["_dir"] = work / name
    return m


def _t(m: dict, target: str) -> dict:
    return m["targets"][target]


def _speed(t: dict) -> str:
    met = t["metrics"]
    busy = ((t.get("latency") or {}).get("compressed", {}).get("1") or {}).get("machine", {}).get("busy")
    s = f"{met['speedup_vs_fp32@1']:.2f}x ({met.get('speedup_vs_fp32_low@1', float('nan')):.2f}-{met.get('speedup_vs_fp32_high@1', float('nan')):.2f})"
    return s + (" BUSY" if busy else "")


def channels(work: Path) -> None:
    print("\n### 50% channel pruning: latency against the dense model, accuracy without and with recovery\n")
    print(
        "| model | top-1 dense | top-1 pruned | top-1 pruned + recovery | MACs dense -> pruned | ORT speed-up (95% CI) | OpenVINO speed-up (95% CI) | recovery |"
    )
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for label, src, data in (
        ("digits ResNet (trained)", "edgesmith.zoo:trained_digits_resnet", DIGITS32),
        ("digits MobileNetV2 (trained)", "edgesmith.zoo:trained_digits_mobilenet", DIGITS32),
        ("resnet18 224x224 (random weights)", "edgesmith.zoo:resnet18", None),
        ("mobilenet_v2 224x224 (random weights)", "edgesmith.zoo:mobilenet_v2", None),
    ):
        trained = data is not None
        plain = _run(work, "chan-" + src.split(":")[1], src, [{"type": "prune_channels", "ratio": 0.5}], data)
        d = _t(plain, TARGETS[0])["details"]["prune_channels"]
        macs = f"{d['macs'][0] / 1e6:.1f} M -> {d['macs'][1] / 1e6:.1f} M"
        top = lambda m: f"{_t(m, TARGETS[0])['metrics']['top1']:.2f}" if trained else "—"  # noqa: E731
        ref = f"{_t(plain, TARGETS[0])['reference_metrics']['top1']:.2f}" if trained else "—"
        rec, how = "—", "—"
        if trained:
            recovered = _run(
                work, "chanrec-" + src.split(":")[1], src, [{"type": "prune_channels", "ratio": 0.5, "recover": RECOVER}], data, targets=TARGETS[:1]
            )
            rec = top(recovered)
            how = _t(recovered, TARGETS[0])["details"]["prune_channels"]["recovery"]
        print(f"| {label} | {ref} | {top(plain)} | {rec} | {macs} | {_speed(_t(plain, TARGETS[0]))} | {_speed(_t(plain, TARGETS[1]))} | {how} |", flush=True)


def sparse(work: Path) -> None:
    print("\n### 80% unstructured sparsity (digits ResNet, trained)\n")
    print("| setting | top-1 | float top-1 | raw ONNX ratio | deflated download ratio | ORT speed-up | note |")
    print("|---|---|---|---|---|---|---|", flush=True)
    src = "edgesmith.zoo:trained_digits_resnet"
    for label, p in (
        ("one-shot, no recovery", {"type": "prune_magnitude", "sparsity": 0.8}),
        ("gradual (cubic) + recovery", {"type": "prune_magnitude", "sparsity": 0.8, "schedule": "gradual", "recover": RECOVER}),
        ("TEDDY prune_l0 + recovery", {"type": "prune_l0", "sparsity": 0.8, "recover": {**RECOVER, "alpha": 0.1 / 1.1, "temperature": 1.0}}),
    ):
        m = _run(work, "sparse-" + p["type"] + ("-g" if "schedule" in p else ""), src, [p], DIGITS32, targets=TARGETS[:1])
        t = _t(m, TARGETS[0])
        s = t["size"]
        print(
            f"| {label} ({p['type']}) | {t['metrics']['top1']:.2f} | {t['reference_metrics']['top1']:.2f} | {s['ratio']:.2f}x | "
            f"{s.get('deflate_ratio', float('nan')):.2f}x | {_speed(t)} | dense runtime: no speed expected |",
            flush=True,
        )


def subnetwork(work: Path) -> None:
    import numpy as np

    print("\n### A 50% subnetwork of a random digits CNN (Edge-Popup, 10 epochs of scores; held-out top-1, 3 seeds)\n")
    print("| setting | top-1 mean ± sd | per seed |")
    print("|---|---|---|", flush=True)
    dense = _run(work, "sub-dense", "edgesmith.zoo:pretrained_digits_cnn", [], DIGITS8, targets=TARGETS[:1])
    for label, opts in (
        ("without recycling", {"recycle": False}),
        ("with recycling (every 2 epochs, top 10%)", {"recycle": True}),
        ("Biprop (binary weights) with recycling", {"recycle": True, "method": "biprop"}),
    ):
        accs = []
        for seed in range(3):
            m = _run(
                work,
                f"sub-{seed}-{len(accs)}-{opts.get('method', 'ep')}-{opts['recycle']}",
                "edgesmith.zoo:digits_cnn",
                [{"type": "subnetwork", "keep": 0.5, "epochs": 10, "seed": seed, **opts}],
                DIGITS8,
                targets=TARGETS[:1],
            )
            accs.append(_t(m, TARGETS[0])["metrics"]["top1"])
        print(f"| {label} | {np.mean(accs):.2f} ± {np.std(accs, ddof=1):.2f} | {', '.join(f'{a:.2f}' for a in accs)} |", flush=True)
    print(f"| trained dense CNN (reference) | {_t(dense, TARGETS[0])['metrics']['top1']:.2f} | |", flush=True)


def int8(work: Path) -> None:
    from edgesmith.runtime import Artifact
    from edgesmith.runtime.bench import make_feeds, run_worker
    from edgesmith.runtime.compare import bootstrap_ratio
    from edgesmith.schema import InputSpec

    print("\n### 50% channels + INT8 against dense INT8, same runtime (batch 1, interleaved in one child)\n")
    print("| model | runtime | top-1 dense INT8 | top-1 pruned INT8 (recovered) | pruned INT8 speed over dense INT8 (95% CI) | machine |")
    print("|---|---|---|---|---|---|", flush=True)
    for label, src, data in (
        ("digits ResNet (trained)", "edgesmith.zoo:trained_digits_resnet", DIGITS32),
        ("digits MobileNetV2 (trained)", "edgesmith.zoo:trained_digits_mobilenet", DIGITS32),
        ("resnet18 224x224 (random weights, speed only)", "edgesmith.zoo:resnet18", None),
    ):
        prune = {"type": "prune_channels", "ratio": 0.5, **({"recover": RECOVER} if data is not None else {})}
        dense = _run(work, "i8-dense-" + src.split(":")[1], src, [{"type": "auto_int8"}], data)
        pruned = _run(work, "i8-pruned-" + src.split(":")[1], src, [prune, {"type": "auto_int8"}], data)
        size = 224 if data is None else 32
        for target in TARGETS:
            arts = []
            for m in (dense, pruned):
                b = _t(m, target)["bundle"]
                arts.append(Artifact(m["_dir"] / b["artifact"], _t(m, target)["profile"]["backend"], b["artifact_options"]))
            feeds = make_feeds([InputSpec(name="input", shape=["batch", 3 if size == 224 else 1, size, size])], 1)
            a, b = run_worker(arts, feeds, 2, 10, 240, None, 24, raw=True)
            split = lambda t: [t[i * 10 : (i + 1) * 10] for i in range(24)]  # noqa: E731
            ratio, low, high = bootstrap_ratio(split(b["times_ms"]), split(a["times_ms"]))
            machine = "BUSY" if a["machine"]["busy"] else "quiet"
            top = lambda m: f"{_t(m, target)['metrics']['top1']:.2f}" if data is not None else "—"  # noqa: E731
            print(f"| {label} | {target} | {top(dense)} | {top(pruned)} | {ratio:.2f}x ({low:.2f}-{high:.2f}) | {machine} |", flush=True)


def ovsparse(work: Path) -> None:
    import numpy as np
    import openvino as ov

    from edgesmith.runtime.bench import time_interleaved

    print("\n### OpenVINO's sparse-weight decompression on an 80%-sparse INT8 transformer (bert_mini, batch 1)\n")
    m = _run(
        work,
        "ovsparse",
        "edgesmith.zoo:bert_mini",
        [{"type": "prune_magnitude", "sparsity": 0.8}, {"type": "nncf_ptq", "model_type": "transformer"}],
        None,
        targets=TARGETS[1:],
    )
    xml = m["_dir"] / _t(m, TARGETS[1])["bundle"]["artifact"]
    core = ov.Core()
    props = core.get_property("CPU", "SUPPORTED_PROPERTIES")
    print(f"- CPU plugin properties list CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE: {'CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE' in props}")
    model = core.read_model(str(xml))
    feeds = {
        p.get_any_name(): np.ones([1 if d.is_dynamic else d.get_length() for d in p.get_partial_shape()], dtype=p.get_element_type().to_dtype())
        for p in model.inputs
    }

    class S:
        def __init__(self, config):
            self.c = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2, **config})

        def run(self, f):
            return self.c(f)

    try:
        sessions = [S({}), S({"CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE": 0.5})]
    except Exception as exc:  # noqa: BLE001 - the property may be refused on this CPU
        print(f"- compiling with CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE failed: {str(exc).splitlines()[0][:200]}")
        return
    times = time_interleaved(sessions, feeds, 10, 240, None, 24)
    a, b = (np.median(t) * 1e3 for t in times)
    print(f"- dense path {a:.3f} ms, sparse-decompression path {b:.3f} ms: {a / b:.2f}x")


def graph(work: Path) -> None:  # noqa: ARG001
    import torch

    from edgesmith.compress.prune.edge_scores import drop_edges
    from edgesmith.zoo.graph import digits_graph, train_gcn

    print("\n### TEDDY's edge scores on a graph: a GCN over the digits kNN graph (8 neighbours, 10 labels per class)\n")
    print("| edges dropped | by TEDDY's degree scores: test top-1 | at random: test top-1 |")
    print("|---|---|---|", flush=True)
    g = digits_graph()
    n = len(g["x"])
    _, full = train_gcn(g, g["edge_index"])
    print(f"| none | {full:.2f} | {full:.2f} |")
    src, dst = g["edge_index"]
    one_way = (src < dst).nonzero().flatten()
    for frac in (0.3, 0.5, 0.7):
        _, teddy = train_gcn(g, drop_edges(g["edge_index"], n, frac))
        k = int(frac * len(one_way))
        gone = set(map(tuple, g["edge_index"][:, one_way[torch.randperm(len(one_way), generator=torch.Generator().manual_seed(0))[:k]]].t().tolist()))
        keep = torch.tensor([u == v or (min(u, v), max(u, v)) not in gone for u, v in zip(src.tolist(), dst.tolist())])
        _, rand = train_gcn(g, g["edge_index"][:, keep])
        print(f"| {frac:.0%} | {teddy:.2f} | {rand:.2f} |", flush=True)


def main() -> None:
    import torch

    torch.set_num_threads(2)
    wanted = sys.argv[1:] or ["channels", "sparse", "subnetwork", "int8", "ovsparse", "graph"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in wanted:
            print(f"{name} ...", file=sys.stderr, flush=True)
            globals()[name](Path(tmp))


if __name__ == "__main__":
    main()
