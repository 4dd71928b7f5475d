"""edgesmith search, measured: throughput, cache, and the front against optimize's post-training pick.

    python benchmarks/search.py [throughput|zygote|front ...] [--target PROFILE]   (throughput's target; default x86-avx512-vnni-ort)

- throughput: one grid (the trained digits ResNet, 32x32: channel pruning at 30/50% with 2 recovery epochs,
  x ptq_int8 on/off, x 2 calibrations = 9 trials: an option of a pass switched off is not searched) searched with 1 worker and with 2 workers, each with a
  fresh cache: trials per hour and their ratio (one run each), the cache hit rate, and the same search
  again in a new folder with the warm cache (its hit rate).
- zygote: the same grid, 2 workers, builds forked from the zygote against a fresh interpreter per build.
- front: `optimize --train-budget 30 --budget top1=1.0` on the trained digits ResNet and MobileNet (its
  post-training pick, then the preset's training search), then every trial on the training search's front
  timed against the post-training pick's artifact, interleaved in one child (the ratio is measured, not
  derived from two races): is a point >= 1.5x faster within 1 point of top-1?
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

DIGITS32 = {"calibration": {"source": "digits32", "split": "train"}, "evaluation": {"source": "digits32", "split": "test"}}


class Quiet:
    import contextlib

    @contextlib.contextmanager
    def step(self, text):
        yield

    def info(self, text):
        pass


def _grid(target: str) -> dict:
    return {
        "name": "bench-search",
        "model": {"source": "edgesmith.zoo:trained_digits_resnet"},
        "data": DIGITS32,
        "passes": [
            {"type": "prune_channels", "enabled": {"search": [True, False]}, "ratio": {"search": [0.3, 0.5]}, "recover": {"epochs": 2}},
            {"type": "ptq_int8", "enabled": {"search": [True, False]}, "calibration": {"search": ["minmax", "entropy"]}},
        ],
        "targets": [target],
    }


def throughput(work: Path, target: str = "x86-avx512-vnni-ort") -> None:
    from edgesmith.search import Settings, search

    data = _grid(target)
    print(f"\n### Throughput on {target}: the same 9-trial grid with 1 and 2 workers (fresh cache each), then again with the warm cache\n")
    print("| run | workers | trials | wall s | builds s | timing s | trials/hour | cache hits / lookups | best |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    rates = {}
    for label, workers, cache in (("1 worker", 1, work / "c1"), ("2 workers", 2, work / "c2"), ("2 workers, warm cache", 2, work / "c2")):
        res = search(
            data, work, work / label.replace(" ", "-").replace(",", ""), settings=Settings(workers=workers, cache_dir=cache, run_best=False), reporter=Quiet()
        )
        i = res.info
        rates[label] = i["trials_per_hour"]
        c = i["cache"]
        print(
            f"| {label} | {workers} | {i['new_trials']} | {i['seconds']:.0f} | {i['build_seconds']:.0f} | {i['timing_seconds']:.0f} | "
            f"{i['trials_per_hour']:.0f} | {c['hits']}/{c['hits'] + c['misses']} ({100 * c['hit_rate']:.0f}%) | "
            + (f"#{res.best.number} {res.best.label} ({res.best.speedup:.2f}x FP32) |" if res.best else "none |"),
            flush=True,
        )
    print(f"\n2 workers / 1 worker: {rates['2 workers'] / rates['1 worker']:.2f}x trials per hour (fresh caches; one run each)")


def zygote(work: Path, target: str = "x86-avx512-vnni-ort") -> None:
    """The throughput grid with 2 workers and a fresh cache each, its builds forked from the zygote
    (search/zygote.py, the default) and each in a fresh interpreter (the fallback, what every build did
    before): trials per hour and their ratio, one run each, in alternating order (fresh, zygote, fresh, zygote)."""
    from edgesmith.search import Settings, search
    from edgesmith.search.executors import LocalPool

    data = _grid(target)
    real = LocalPool._ensure_zygote
    print(f"\n### Build start-up on {target}: zygote forks vs a fresh interpreter per build (9-trial grid, 2 workers, fresh cache each)\n")
    print("| builds | run | wall s | builds s | timing s | trials/hour |")
    print("|---|---|---|---|---|---|", flush=True)
    rates: dict[str, list[float]] = {"fresh interpreter": [], "zygote": []}
    for n, label in enumerate(["fresh interpreter", "zygote", "fresh interpreter", "zygote"]):
        LocalPool._ensure_zygote = real if label == "zygote" else (lambda self: None)  # type: ignore[method-assign]
        try:
            res = search(data, work, work / f"z{n}", settings=Settings(workers=2, cache_dir=work / f"zc{n}", run_best=False), reporter=Quiet())
        finally:
            LocalPool._ensure_zygote = real  # type: ignore[method-assign]
        i = res.info
        rates[label].append(i["trials_per_hour"])
        print(f"| {label} | {n + 1} | {i['seconds']:.0f} | {i['build_seconds']:.0f} | {i['timing_seconds']:.0f} | {i['trials_per_hour']:.0f} |", flush=True)
    z, f = sum(rates["zygote"]), sum(rates["fresh interpreter"])
    print(f"\nzygote / fresh interpreter: {z / f:.2f}x trials per hour (two runs each, summed)")


def front(work: Path, models: list[str]) -> None:
    import subprocess

    from edgesmith.runtime.base import Artifact
    from edgesmith.search.measure import race

    exe = str(Path(sys.executable).with_name("edgesmith"))
    print("\n### The training search's front vs optimize's post-training pick (ONNX Runtime, batch 1, 2 threads, budget top1=1.0)\n")
    print("| model | post-training pick: top-1, x FP32 | front trial | top-1 | MB | x FP32 (its race) | **x the pick** (interleaved, 95% CI) | within 1 pt |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for src in models:
        out = work / src.split(":")[1]
        t0 = time.time()
        proc = subprocess.run(
            [exe, "optimize", src, "--train-budget", "30", "--budget", "top1=1.0", "--same-runtime", "--out", str(out)], capture_output=True, text=True
        )
        if proc.returncode not in (0, 1):
            print(f"| {src} | optimize failed: {proc.stderr.strip().splitlines()[-1][:200]} |||||||", flush=True)
            continue
        opt = json.loads((out / "optimize.json").read_text())
        s = json.loads((out / "search" / "search.json").read_text())
        pick = next(c for c in opt["candidates"] if c["name"] == opt["winner"])
        ref_top1 = opt["reference"].get("top1")
        tdir = out / "search" / "trials"

        def artifact(number: int) -> Artifact:
            m = json.loads((tdir / f"{number:04d}" / "manifest.json").read_text())
            b = next(iter(m["targets"].values()))["bundle"]
            return Artifact(tdir / f"{number:04d}" / b["artifact"], "onnxruntime", b.get("artifact_options") or {})

        # the preset's "no pass, <the pick's INT8>=on" trial is the post-training pick, rebuilt in the search
        same = next((t for t in s["trials"] if t["label"].startswith("no pass") and t["label"].endswith("=on")), None)
        front_trials = [t for t in s["trials"] if t["on_front"]]
        timed, _ = (
            race([artifact(t["number"]) for t in front_trials], artifact(same["number"]), _feeds(out), 2, rounds=12, per_round=20)
            if same and front_trials
            else ([], None)
        )
        for t, tm in zip(front_trials, timed):
            within = ref_top1 is not None and ref_top1 - t["accuracy"] <= 1.0
            print(
                f"| {src.split(':')[1]} | {pick['name']}: {pick['metrics'].get('top1', float('nan')):.2f}, {pick['speedup'] or 1:.2f}x | "
                f"#{t['number']} {t['label']} | {t['accuracy']:.2f} | {t['size_mb']:.3f} | {t['speedup']:.2f}x | "
                f"**{tm['speedup']:.2f}x** ({tm['low']:.2f}-{tm['high']:.2f}){' busy' if tm['busy'] else ''} | {'yes' if within else 'no'} |",
                flush=True,
            )
        tr = opt.get("training_search") or {}
        print(
            f"\n{src}: optimize + training search {time.time() - t0:.0f} s, {len(s['trials'])} trials, cache hit rate "
            f"{100 * s['cache']['hit_rate']:.0f}%; optimize chose {'the training search' if tr.get('chosen') else 'the post-training pick'}: "
            f"{tr.get('why', '')[:300]}\n",
            flush=True,
        )
        failed = [f"#{t['number']} {t['label']}: {t['error'][:120]}" for t in s["trials"] if t["state"] != "complete"]
        if failed:
            print("failed trials: " + "; ".join(failed) + "\n", flush=True)


def _feeds(out: Path) -> dict:
    import numpy as np

    d = np.load(out / "bundle" / "eval_data.npz")
    return {k.split(":", 1)[1]: d[k][:1] for k in d.files if k.startswith("input:")}


def main() -> None:
    args = sys.argv[1:]
    target = args[args.index("--target") + 1] if "--target" in args else "x86-avx512-vnni-ort"
    which = [a for a in args if a in ("throughput", "zygote", "front")] or ["throughput", "zygote", "front"]
    with tempfile.TemporaryDirectory(prefix="edgesmith-bench-search-") as tmp:
        work = Path(tmp)
        if "throughput" in which:
            throughput(work, target)
        if "zygote" in which:
            zygote(work, target)
        if "front" in which:
            front(work, ["edgesmith.zoo:trained_digits_resnet", "edgesmith.zoo:trained_digits_mobilenet"])


if __name__ == "__main__":
    main()
