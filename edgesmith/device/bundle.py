"""Validate a run's artifacts on the device itself, without torch or the original model.

A run directory is a bundle: the compiled artifact per target, the float ONNX model, the evaluation
data (``bundle/eval_data.npz``) and the float model's outputs on each target's runtime
(``bundle/<target>.reference_outputs.npz``). On the device, ``edgesmith validate RUN_DIR`` loads the
artifact with the target's runtime (``pip install 'edgesmith[ort]'`` or ``[openvino]``), measures
accuracy against the stored labels and reference outputs, times the artifact against the float model
compiled there, and judges the profile's budgets — accuracy on the target's own runtime, as it should be.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.data.sources import Dataset, split_batches
from edgesmith.environment import library_versions
from edgesmith.errors import InputError
from edgesmith.evaluate import Evaluator, judge, overall, time_against_float
from edgesmith.outputs import inside, load_manifest
from edgesmith.profiles.schema import Profile
from edgesmith.progress import Reporter
from edgesmith.runtime import Artifact, get_backend
from edgesmith.schema import InputSpec


def validate_bundle(run_dir: Path, target: str | None = None, reporter: Any = None) -> dict[str, Any]:
    """Re-validate every target of a run (or one) here; returns a manifest-shaped dict of results."""

    rep = reporter or Reporter()
    manifest = load_manifest(run_dir)
    targets = manifest.get("targets", {})
    if target is not None:
        if target not in targets:
            raise InputError(f"run has no target {target!r} (it has {sorted(targets)})", hint="pick one of the run's targets")
        targets = {target: targets[target]}
    dataset, specs = _bundle_data(run_dir, manifest)
    metric = "top1" if manifest["recipe"].get("metric") in ("top1", "auto") and dataset.has_labels else "fidelity"
    evaluator = Evaluator(dataset, metric)
    result: dict[str, Any] = {"run": str(run_dir), "versions": library_versions(), "targets": {}}
    for name, t in targets.items():
        result["targets"][name] = _validate_target(run_dir, name, t, evaluator, dataset, specs, rep)
    statuses = [t["verdict"] for t in result["targets"].values()]
    result["verdict"] = "fail" if "fail" in statuses else "inconclusive" if "inconclusive" in statuses else "pass"
    return result


def _bundle_data(run_dir: Path, manifest: dict) -> tuple[Any, list]:

    data_file = run_dir / "bundle" / "eval_data.npz"
    if not data_file.is_file():
        raise InputError(f"{run_dir} carries no evaluation data (bundle/eval_data.npz)", hint="rebuild with evaluation data in the recipe")
    with np.load(data_file, allow_pickle=False) as npz:
        inputs = {k.removeprefix("input:"): npz[k] for k in npz.files if k.startswith("input:")}
        labels = npz["labels"] if "labels" in npz.files else None
        batch_size = int(npz["batch_size"]) if "batch_size" in npz.files else 32  # the run's batching: the same outputs bit for bit
    dataset = Dataset("bundle", split_batches(inputs, labels, batch_size))
    specs = [InputSpec.model_validate(s) for s in manifest["recipe"]["inputs"] or []] or [
        InputSpec.model_validate({"name": k, "shape": ["batch", *v.shape[1:]], "dtype": str(v.dtype)}) for k, v in inputs.items()
    ]
    return dataset, specs


def _validate_target(run_dir: Path, name: str, t: dict, evaluator: Any, dataset: Any, specs: list, rep: Any) -> dict[str, Any]:

    profile = Profile.model_validate(t["profile"])
    backend = get_backend(profile.backend)
    bundle = t.get("bundle") or {}
    if "artifact" not in bundle or "reference_outputs" not in bundle:
        raise InputError(f"target {name!r} of this run has no device bundle", hint="rebuild with this version of edgesmith")
    artifact = Artifact(inside(run_dir, bundle["artifact"]), profile.backend, bundle.get("artifact_options", {}))
    with np.load(inside(run_dir, bundle["reference_outputs"]), allow_pickle=False) as npz:
        ref_out = [npz[f"arr_{i}"] for i in range(len(npz.files))]
    with rep.step(f"[{name}] evaluating {artifact.path.name} on {dataset.num_samples} samples with {profile.backend}"):
        scored = evaluator.score(evaluator.outputs(backend, artifact, profile.threads), ref_out)
    metrics, reference = dict(scored.metrics), dict(scored.reference)
    metrics["artifact_mb"] = sum(f.stat().st_size for f in artifact.path.parent.glob(artifact.path.stem + ".*")) / 2**20
    latency: dict[str, dict] = {"compressed": {}, "fp32": {}}
    if bundle.get("float_model"):
        fp32 = backend.compile(inside(run_dir, bundle["float_model"]), Path(_scratch()) / f"fp32{backend.artifact_suffix}", profile, specs)
        latency = time_against_float(
            artifact, fp32, specs, profile, dataset.first(max(profile.batch_sizes)), metrics, reference, reporter=rep, label=f"[{name}] "
        )
    verdicts = judge(profile, metrics, reference, latency)
    return {
        "profile": t["profile"],
        "estimated": profile.estimated,
        "metrics": metrics,
        "reference_metrics": reference,
        "latency": latency,
        "samples": scored.samples,
        "verdicts": [v.as_dict() for v in verdicts],
        "verdict": overall(verdicts),
        "notes": [],
    }


_SCRATCH: list[str] = []


def _scratch() -> str:

    if not _SCRATCH:
        _SCRATCH.append(tempfile.mkdtemp(prefix="edgesmith-device-"))
        atexit.register(shutil.rmtree, _SCRATCH[0], True)
    return _SCRATCH[0]
