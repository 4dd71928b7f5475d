"""Validate a run's artifacts on the device itself, without torch or the original model.

A run directory is a bundle: the compiled artifact per target, the float ONNX model, the evaluation
data (``bundle/eval_data.npz``) and the float model's outputs on each target's runtime
(``bundle/<target>.reference_outputs.npz``). On the device, ``edgesmith validate RUN_DIR`` loads the
artifact with the target's runtime (``pip install 'edgesmith[ort]'`` or ``[openvino]``), measures
accuracy against the stored labels and reference outputs, times the artifact against the float model
compiled there, and judges the profile's budgets — accuracy on the target's own runtime, as it should be.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.errors import InputError


def _load_manifest(run_dir: Path) -> dict:
    path = run_dir / "manifest.json"
    if not path.is_file():
        raise InputError(f"{run_dir} has no manifest.json: it is not a complete edgesmith run", hint="give the output directory of `edgesmith run` / `quantize`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})", hint="the run directory is damaged; rebuild it") from exc


def _inside(run_dir: Path, rel: str) -> Path:
    # NOTE: paths come from the manifest; never let them point outside the run directory
    path = (run_dir / rel).resolve()
    if not path.is_relative_to(run_dir.resolve()):
        raise InputError(f"manifest path {rel!r} points outside {run_dir}", hint="refusing path traversal from the manifest")
    return path


def validate_bundle(run_dir: Path, target: str | None = None, reporter: Any = None) -> dict[str, Any]:
    """Re-validate every target of a run (or one) here; returns a manifest-shaped dict of results."""
    from edgesmith.data.sources import Dataset, _split_batches
    from edgesmith.pipeline import Reporter, library_versions
    from edgesmith.profiles.schema import Profile
    from edgesmith.recipe import InputSpec
    from edgesmith.runtime import Artifact, get_backend
    from edgesmith.runtime.bench import benchmark_against, make_feeds
    from edgesmith.validate import fidelity, judge, overall, record_latency, run_dataset, top1

    rep = reporter or Reporter()
    manifest = _load_manifest(run_dir)
    targets = manifest.get("targets", {})
    if target is not None:
        if target not in targets:
            raise InputError(f"run has no target {target!r} (it has {sorted(targets)})", hint="pick one of the run's targets")
        targets = {target: targets[target]}
    data_file = run_dir / "bundle" / "eval_data.npz"
    if not data_file.is_file():
        raise InputError(f"{run_dir} carries no evaluation data (bundle/eval_data.npz)", hint="rebuild with evaluation data in the recipe")
    with np.load(data_file, allow_pickle=False) as npz:
        inputs = {k.removeprefix("input:"): npz[k] for k in npz.files if k.startswith("input:")}
        labels = npz["labels"] if "labels" in npz.files else None
    dataset = Dataset("bundle", _split_batches(inputs, labels, 32))
    specs = [InputSpec.model_validate(s) for s in manifest["recipe"]["inputs"] or []] or \
        [InputSpec(name=k, shape=["batch", *v.shape[1:]], dtype=str(v.dtype)) for k, v in inputs.items()]
    result: dict[str, Any] = {"run": str(run_dir), "versions": library_versions(), "targets": {}}
    for name, t in targets.items():
        profile = Profile.model_validate(t["profile"])
        backend = get_backend(profile.backend)
        bundle = t.get("bundle") or {}
        if "artifact" not in bundle or "reference_outputs" not in bundle:
            raise InputError(f"target {name!r} of this run has no device bundle", hint="rebuild with this version of edgesmith")
        artifact = Artifact(_inside(run_dir, bundle["artifact"]), profile.backend, bundle.get("artifact_options", {}))
        with np.load(_inside(run_dir, bundle["reference_outputs"]), allow_pickle=False) as npz:
            ref_out = [npz[f"arr_{i}"] for i in range(len(npz.files))]
        with rep.step(f"[{name}] evaluating {artifact.path.name} on {dataset.num_samples} samples with {profile.backend}"):
            cand_out = run_dataset(backend.load(artifact, profile.threads), dataset)
        metrics: dict[str, Any] = fidelity(ref_out, cand_out)
        reference: dict[str, Any] = {"cosine": 1.0, "sqnr_db": float("inf")}
        if labels is not None and manifest["recipe"].get("metric") == "top1":
            metrics["top1"], reference["top1"] = top1(cand_out[0], labels), top1(ref_out[0], labels)
        metrics["artifact_mb"] = sum(f.stat().st_size for f in artifact.path.parent.glob(artifact.path.stem + ".*")) / 2**20
        latency: dict[str, dict] = {"compressed": {}, "fp32": {}}
        if bundle.get("float_model"):
            fp32 = backend.compile(_inside(run_dir, bundle["float_model"]), Path(_scratch()) / f"fp32{backend.artifact_suffix}", profile, specs)
            for batch in profile.batch_sizes:
                feeds = make_feeds(specs, batch, dataset.first(batch))
                with rep.step(f"[{name}] benchmarking batch {batch} ({profile.threads} threads)"):
                    cand, base = benchmark_against(artifact, fp32, feeds, profile.threads)
                record_latency(metrics, reference, batch, cand, base, latency, batch == profile.batch_sizes[0])
        verdicts = judge(profile, metrics, reference)
        result["targets"][name] = {"profile": t["profile"], "estimated": profile.estimated, "metrics": metrics,
                                   "reference_metrics": reference, "latency": latency,
                                   "verdicts": [v.as_dict() for v in verdicts], "verdict": overall(verdicts), "notes": []}
    statuses = [t["verdict"] for t in result["targets"].values()]
    result["verdict"] = "fail" if "fail" in statuses else "pass"
    return result


_SCRATCH: list[str] = []


def _scratch() -> str:
    import atexit
    import shutil
    import tempfile

    if not _SCRATCH:
        _SCRATCH.append(tempfile.mkdtemp(prefix="edgesmith-device-"))
        atexit.register(shutil.rmtree, _SCRATCH[0], True)
    return _SCRATCH[0]
