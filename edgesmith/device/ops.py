"""What the device agent (``device.agent``) can be asked to do: each op is the same code a local command
runs (``bench``, ``compare``, ``validate RUN_DIR``, the race of optimize and search, ``profiles init``), on
files the request names by content hash. Results are JSON-able dicts, as the local commands produce."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
from pathlib import Path
from typing import Any

from edgesmith.device.agent import LOCK_WAIT_S, RequestError, have, job_folder, safe_rel, timing_lock

TIMED = {"bench", "compare", "race", "validate", "profile"}


def serve(req: dict, work: Path, progress: Any) -> Any:
    op = req.get("op")
    if op == "have":
        return have(work, req)
    if op == "modules":
        return modules(req.get("modules", []))
    if op not in TIMED:
        raise RequestError("input", f"unknown request {op!r}")
    with job_folder(work, dict(req.get("files", {})), list(req.get("verify", []))) as job:
        with timing_lock(work, str(req.get("client", "a client")), float(req.get("lock_wait_s", LOCK_WAIT_S))) as held:
            value = OPS[op](req, job, progress)
        return {"value": value, "lock": held, "node": platform.node()}


def modules(names: list[str]) -> dict[str, str | None]:
    """The version of each module that imports here (None where it does not)."""

    found: dict[str, str | None] = {}
    for name in names:
        try:
            mod = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a broken install is as missing as an absent one
            found[name] = None
            continue
        try:
            found[name] = importlib.metadata.version({"yaml": "pyyaml", "onnxruntime": "onnxruntime"}.get(name, name))
        except importlib.metadata.PackageNotFoundError:
            found[name] = str(getattr(mod, "__version__", "?"))
    return found


def _profile(req: dict, job: Path) -> str | None:
    """The target profile as the build machine read it (a built-in name or a user's file), written into the job."""

    data = req.get("profile")
    if not data:
        return None
    import yaml

    path = job / "profile.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def _bench(req: dict, job: Path, progress: Any) -> Any:
    from edgesmith.runtime.bench import bench_artifact

    o = req["options"]
    return bench_artifact(
        job / safe_rel(req["artifact"]),
        o.get("backend", "auto"),
        target=_profile(req, job),
        threads=o.get("threads"),
        batches=o.get("batches"),
        warmup=o.get("warmup", 10),
        iterations=o.get("iterations", 100),
        duration_s=o.get("duration_s"),
        input_shapes=o.get("input_shapes") or None,
        ort_level=o.get("ort_level", "all"),
        until_stable=o.get("until_stable", False),
        cv_threshold=o.get("cv", 0.10),
        max_repeats=o.get("max_repeats", 5),
        reporter=progress,
        timing=o.get("timing", "call"),
    )


def _compare(req: dict, job: Path, progress: Any) -> Any:
    """``edgesmith compare`` (synthetic inputs), or the gate's re-timing of baseline against candidate
    (``feeds``: the run's own inputs; artifacts with their options); every timed run comes back."""
    from dataclasses import asdict

    import numpy as np

    from edgesmith.runtime.base import Artifact
    from edgesmith.runtime.bench import artifact_for, make_feeds
    from edgesmith.runtime.compare import compare

    o = req["options"]
    if req.get("feeds"):
        with np.load(job / safe_rel(req["feeds"]), allow_pickle=False) as npz:
            feeds = {k: npz[k] for k in npz.files}
        art_a, art_b = (Artifact(job / safe_rel(d["path"]), d["backend"], dict(d.get("options") or {})) for d in (req["a"], req["b"]))
    else:
        art_a, specs = artifact_for(job / safe_rel(req["a"]), o.get("input_shapes") or None)
        art_b, _ = artifact_for(job / safe_rel(req["b"]), o.get("input_shapes") or None)
        feeds = make_feeds(specs, o["batch"])
    progress.info(f"comparing on the device: {o['rounds']} rounds x {o['per_round']} runs")
    res = compare(art_a, art_b, feeds, o["threads"], o["rounds"], o["per_round"], confidence=o["confidence"])
    return {**asdict(res), "verdict": res.verdict, "describe": res.describe()}


def _race(req: dict, job: Path, progress: Any) -> Any:
    import numpy as np

    from edgesmith.runtime.base import Artifact
    from edgesmith.runtime.race import race

    def art(d: dict) -> Artifact:
        return Artifact(job / safe_rel(d["path"]), d["backend"], dict(d.get("options") or {}))

    with np.load(job / safe_rel(req["feeds"]), allow_pickle=False) as npz:
        feeds = {k: npz[k] for k in npz.files}
    errors: dict[int, str] = {}
    results, machine = race(
        [art(a) for a in req["artifacts"]], art(req["ref"]), feeds, int(req["threads"]), rounds=int(req["rounds"]), reporter=progress, errors=errors
    )
    return {"results": results, "machine": machine, "errors": {str(k): v for k, v in errors.items()}}


def _validate(req: dict, job: Path, progress: Any) -> Any:
    from edgesmith.device.bundle import validate_bundle

    return validate_bundle(job / safe_rel(req["run"]), req.get("target"), progress)


def _init_profile(req: dict, job: Path, progress: Any) -> Any:
    from edgesmith.runtime.probe import init_profile

    with progress.step("probing the device" + (" (about 10 s of benchmark)" if req.get("benchmark") else "")):
        profile, notes = init_profile(req["name"], req.get("backend", "onnxruntime"), req.get("threads"), benchmark=bool(req.get("benchmark")))
    return {"profile": profile, "notes": notes}


OPS = {"bench": _bench, "compare": _compare, "race": _race, "validate": _validate, "profile": _init_profile}
