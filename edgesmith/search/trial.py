"""One trial's build phase, run by a worker (a local process or a Ray task): the normal pipeline on the
trial's concrete recipe — passes, export, compile, accuracy on the target's runtime — with the pass
cache, and no timing (latency is measured later, when no build competes for the cores).

The worker is pinned to its share of the cores (``os.sched_setaffinity``, torch's and the runtimes'
thread counts), so builds running side by side do not oversubscribe the machine.
"""

from __future__ import annotations

import io
import os
import socket
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from edgesmith import pipeline
from edgesmith.cache import PassCache
from edgesmith.recipe import parse_recipe


def pin(cores: list[int] | None, threads: int | None = None) -> int:
    """Pin this process to ``cores`` (where the OS allows); returns the thread count to use: one per core
    pinned, else ``threads`` (what a scheduler such as Ray granted), else every core."""
    if cores:
        try:
            os.sched_setaffinity(0, set(cores))
        except (AttributeError, OSError):
            pass
    n = len(cores) if cores else (threads or os.cpu_count() or 1)
    os.environ["OMP_NUM_THREADS"] = str(n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass
    return n


def build(job: dict[str, Any]) -> dict[str, Any]:
    """``job``: recipe (concrete, JSON), base_dir, trial_dir, cache (folder or None), cores, trust_checkpoint.
    Returns a JSON-able summary; never raises (a failed trial is a result)."""
    started = time.time()
    threads = pin(job.get("cores"), job.get("threads"))

    out: dict[str, Any] = {"ok": False, "pid": os.getpid(), "threads": threads, "node": node_id()}
    try:
        recipe = parse_recipe(job["recipe"])
        cache = PassCache(Path(job["cache"])) if job.get("cache") else None
        res = pipeline.run(
            recipe,
            Path(job["base_dir"]),
            out_dir=Path(job["trial_dir"]),
            cache=cache,
            measure_latency=False,
            force=True,
            trust_checkpoint=job.get("trust_checkpoint", False),
        )
        name, t = next(iter(res.manifest["targets"].items()))
        out.update(
            ok=True,
            target=name,
            metrics=t.get("metrics", {}),
            reference=t.get("reference_metrics", {}),
            verdicts=t.get("verdicts", []),
            size=t.get("size", {}),
            notes=t.get("notes", []),
            bundle=t.get("bundle", {}),
            cache_events=(res.manifest.get("cache") or {}).get("events", []),
            cache_notes=(res.manifest.get("cache") or {}).get("notes", []),
        )
    except Exception as exc:  # noqa: BLE001 - the trial failed; the search goes on and says why
        msg = exc.one_line() if hasattr(exc, "one_line") else str(exc)
        out.update(error=f"{type(exc).__name__}: {(msg.strip().splitlines() or [''])[0][:300]}", traceback=traceback.format_exc()[-2000:])
    out["seconds"] = round(time.time() - started, 2)
    return out


def build_remote(job: dict[str, Any]) -> dict[str, Any]:
    """The Ray flavour: build in a node-local folder and send the whole trial folder back as a tar in the
    result (through Ray's object store), so nodes need no shared file system."""

    with tempfile.TemporaryDirectory(prefix="edgesmith-trial-") as tmp:
        local = dict(job, trial_dir=str(Path(tmp) / "trial"))
        if job.get("cache_local"):
            local["cache"] = job["cache_local"]
        out = build(local)
        buf = io.BytesIO()
        if Path(local["trial_dir"]).is_dir():
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                tar.add(local["trial_dir"], arcname=".")
        out["tar"] = buf.getvalue()
    return out


def unpack(data: bytes, dest: Path) -> None:
    """A trial folder sent back by a worker, unpacked without trusting its names (no absolute paths,
    no ``..``, no links): the data filter of tarfile."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")


def node_id() -> str:

    ray = sys.modules.get("ray")  # NOTE: only where Ray already runs us; importing it costs seconds
    if ray is not None and ray.is_initialized():
        return ray.get_runtime_context().get_node_id()

    return socket.gethostname()
