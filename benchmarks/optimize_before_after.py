"""``edgesmith optimize`` before and after a change, on the same models, back to back; each printed claim checked
against an independent timing.

    git worktree add /tmp/before <commit>
    python -m benchmarks.optimize_before_after /tmp/before [MODEL ...]

For each model, ``edgesmith optimize MODEL`` runs with the source tree given (before) and with this one (after),
one right after the other, each in its own process on the default target (``x86-avx512-vnni-ort``, other
runtimes of the CPU allowed). From each run's ``optimize.json``: the winner, its speed-up over ONNX Runtime FP32
with the 95% interval optimize printed, its task metric and cosine, the search's seconds. Then the winner's
artifact and the float model are timed alone, each in its own process with the runtime's plain API
(``benchmarks/plain_timing.py``): the claim holds when that ratio falls inside the printed interval.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["edgesmith.zoo:trained_digits_resnet", "edgesmith.zoo:trained_digits_mobilenet", "edgesmith.zoo:trained_digits_prelu_heads"]


def run_optimize(tree: Path, model: str, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "edgesmith", "optimize", model, "--out", str(out)], env=env, capture_output=True, text=True, cwd=tree)
    wall = time.time() - t0
    if proc.returncode not in (0, 1):
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200], "wall_s": wall}
    res = json.loads((out / "optimize.json").read_text())
    win = next(c for c in res["candidates"] if c["status"] == "winner")
    manifest = json.loads((out / "manifest.json").read_text())
    target = next(iter(manifest["targets"].values()))
    metrics = win.get("metrics") or {}
    task = next((v for k, v in metrics.items() if k not in ("cosine", "sqnr_db", "output_fidelity", "decision_agreement")), None)
    return {
        "winner": res["winner"],
        "speedup": win.get("speedup"),
        "low": win.get("low"),
        "high": win.get("high"),
        "task": task,
        "cosine": metrics.get("cosine"),
        "search_s": res.get("search_seconds"),
        "wall_s": wall,
        "withheld": res.get("claims_withheld"),
        "artifact": out / target["bundle"]["artifact"],
        "float": out / "model.onnx",
    }


def plain_check(r: dict) -> float:
    import numpy as np
    import onnx

    from benchmarks.plain_timing import plain_ratio

    graph = onnx.load(str(r["float"]), load_external_data=False).graph
    init = {i.name for i in graph.initializer}
    feeds = {}
    for i in graph.input:
        if i.name in init:
            continue
        dims = [d.dim_value or 1 for d in i.type.tensor_type.shape.dim]
        elem = i.type.tensor_type.elem_type
        feeds[i.name] = np.ones(dims, np.int64) if elem == onnx.TensorProto.INT64 else np.random.default_rng(0).normal(size=dims).astype(np.float32)
    return plain_ratio(r["float"], r["artifact"], feeds)


def main() -> None:
    before = Path(sys.argv[1]).resolve()
    models = sys.argv[2:] or MODELS
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            for which, tree in (("before", before), ("after", ROOT)):
                print(f"{model}: optimize ({which})", file=sys.stderr, flush=True)
                r = run_optimize(tree, model, Path(tmp) / f"{model.split(':')[-1]}-{which}")
                if "error" not in r:
                    r["plain"] = plain_check(r)
                rows.append((model, which, r))
    print("| model | tree | winner | top-1 | cosine | optimize's claim vs ORT FP32 (95% CI) | plain timing | claim holds | search s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model, which, r in rows:
        if "error" in r:
            print(f"| {model} | {which} | failed: {r['error']} | | | | | | |")
            continue
        claim = f"{r['speedup']:.2f}x ({r['low']:.2f}-{r['high']:.2f})" if r["low"] is not None else f"~{r['speedup']:.2f}x (withheld: busy)"
        holds = "—" if r["low"] is None else ("inside" if r["low"] <= r["plain"] <= r["high"] else "OUTSIDE")
        task = "—" if r["task"] is None else f"{r['task']:.2f}"
        print(f"| {model} | {which} | {r['winner']} | {task} | {r['cosine']:.4f} | {claim} | {r['plain']:.2f}x | {holds} | {r['search_s']:.0f} |")


if __name__ == "__main__":
    main()
