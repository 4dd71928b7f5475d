"""Run a Recipe: model -> torch passes -> export -> ONNX passes -> compile -> validate -> report.

ONNX-level passes and compilation run once per target, because their defaults come from the
target profile (e.g. uint8 activations where VNNI makes them fast).
"""

from __future__ import annotations

import contextlib
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

from edgesmith.errors import ConfigError, ExportError
from edgesmith.recipe import InputSpec, Recipe

VERSIONED = ("edgesmith", "torch", "onnx", "onnxruntime", "onnxscript", "numpy", "scikit-learn", "pydantic", "typer", "openvino", "nncf", "neural-compressor")


class Reporter:
    """Progress hooks; the CLI swaps in a rich progress display."""

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[None]:
        yield

    def info(self, text: str) -> None:
        pass


@dataclass
class RunResult:
    out_dir: Path | None
    manifest: dict[str, Any]
    verdict: str
    dry_run: bool = False
    plan: list[str] = field(default_factory=list)


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def host_info() -> dict[str, Any]:
    """What a latency figure was measured on (the CI gate compares recorded latencies only on the same CPU)."""
    import os

    cpu = platform.processor()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return {"machine": platform.machine(), "processor": platform.processor(), "cpu": cpu, "cores": os.cpu_count(),
            "python": sys.version.split()[0]}


def _mb(path: Path) -> float:
    return path.stat().st_size / 2**20


def resolve_inputs(recipe: Recipe, loaded: Any) -> list[InputSpec]:
    if recipe.inputs:
        specs = list(recipe.inputs)
        if loaded.kind == "onnx":
            _check_against_onnx(specs, loaded.default_inputs)
        return specs
    if loaded.default_inputs:
        return [InputSpec.model_validate(s) for s in loaded.default_inputs]
    raise ConfigError("the recipe does not say the model's inputs", hint="add `inputs: [{name: input, shape: [batch, 3, 224, 224]}]` or --input-shape")


def _check_against_onnx(specs: list[InputSpec], onnx_inputs: list[dict]) -> None:
    from edgesmith.errors import InputError

    by_name = {i["name"]: i for i in onnx_inputs}
    for s in specs:
        if s.name not in by_name:
            raise InputError(f"input {s.name!r} is not an input of the ONNX model (it has {sorted(by_name)})", hint="use the ONNX model's input names")
        want = by_name[s.name]["shape"]
        fixed_mismatch = len(want) != len(s.shape) or any(isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(s.shape, want))
        if fixed_mismatch:
            raise InputError(f"input spec {s.name}{list(s.shape)} does not fit the ONNX model's {s.name}{want}", hint="fix `inputs:` (or --input-shape) to the model's shape")


def plan(recipe: Recipe) -> list[str]:
    """What a run would do, in order (``--dry-run``)."""
    from edgesmith.compress import get_pass
    from edgesmith.model_io import model_kind

    kind = model_kind(recipe.model.source)
    steps = [f"load {kind} model {recipe.model.source}" + (f" with weights {recipe.model.weights}" if recipe.model.weights else "")]
    if recipe.optimize:
        return steps + [f"[{t.profile}] optimize: read the model's structure, try the candidates its policy picks, measure "
                        "fidelity and latency on the target, keep the best (or FP32), full run of the winner" for t in recipe.targets]
    torch_passes = [p for p in recipe.passes if get_pass(p.type).stage == "torch"]
    onnx_passes = [p for p in recipe.passes if get_pass(p.type).stage == "onnx"]
    if kind != "onnx":
        steps.append(f"export the float model to ONNX (opset {recipe.export.opset}, {recipe.export.exporter}) + parity check")
    steps += [f"torch pass {p.type} {p.options or ''}".rstrip() for p in torch_passes]
    if torch_passes:
        steps.append("export the model after torch passes + parity check")
    for t in recipe.targets:
        steps += [f"[{t.profile}] onnx pass {p.type} {p.options or ''}".rstrip() for p in onnx_passes]
        steps += [f"[{t.profile}] compile", f"[{t.profile}] validate against the profile's budgets"]
    return steps


def check_pass_order(recipe: Recipe, kind: str) -> None:
    from edgesmith.compress import get_pass

    seen_onnx = None
    for p in recipe.passes:
        stage = get_pass(p.type).stage
        if stage == "torch" and kind == "onnx":
            raise ConfigError(f"pass {p.type!r} works on torch models, but the model is an ONNX file", hint="start from the PyTorch model (package.module:factory or .pt2), or drop that pass")
        if stage == "torch" and seen_onnx:
            raise ConfigError(f"torch pass {p.type!r} comes after ONNX pass {seen_onnx!r}", hint="list torch-level passes before ONNX-level ones")
        if stage == "onnx":
            seen_onnx = p.type


def run(recipe: Recipe, base_dir: Path, *, out_dir: Path | None = None, trust_checkpoint: bool = False,
        dry_run: bool = False, reporter: Reporter | None = None) -> RunResult:
    from edgesmith.model_io import model_kind
    from edgesmith.outputs import StagedOutput, check_writable
    from edgesmith.profiles import load_profile

    rep = reporter or Reporter()
    out = Path(out_dir or recipe.output_dir)
    if not out.is_absolute() and out_dir is None:
        out = base_dir / out
    if recipe.optimize and not dry_run:
        return _optimized(recipe, base_dir, out, rep)
    kind = model_kind(recipe.model.source)
    check_pass_order(recipe, kind)
    profiles = {t.profile: load_profile(t.profile, base_dir).with_overrides(t.budgets, t.threads, t.batch_sizes) for t in recipe.targets}
    _check_precisions(recipe, profiles)
    from edgesmith.runtime import get_backend

    for prof in profiles.values():
        get_backend(prof.backend)  # a runtime that is not installed fails here, before any work
    if dry_run:
        return RunResult(None, {"recipe": recipe.model_dump(mode="json")}, "dry-run", dry_run=True, plan=plan(recipe))
    check_writable(out)
    started = time.time()
    with StagedOutput(out) as staged:
        manifest = _execute(recipe, base_dir, kind, profiles, staged, trust_checkpoint, rep)
        manifest["duration_s"] = round(time.time() - started, 2)
        from edgesmith.report import render_markdown

        staged.path("report.md").write_text(render_markdown(manifest))
        staged.commit(manifest)
    return RunResult(out, manifest, manifest["verdict"])


def _optimized(recipe: Recipe, base_dir: Path, out: Path, rep: Reporter) -> RunResult:
    """``passes: auto``: `edgesmith optimize` per target, each into its own folder (one target: ``out``)."""
    from edgesmith.optimize import optimize

    results = []
    for t in recipe.targets:
        one = recipe.model_copy(update={"targets": [t], "optimize": False})
        results.append(optimize(one, base_dir, out_dir=out if len(recipe.targets) == 1 else out / Path(t.profile).stem, reporter=rep))
    import json

    if len(results) == 1:
        return RunResult(out, json.loads((out / "manifest.json").read_text()), results[0].verdict)
    verdict = "fail" if any(r.verdict == "fail" for r in results) else "pass"
    return RunResult(out, {"optimize": {str(r.out_dir): r.winner.plan.name for r in results}, "targets": {}}, verdict)


def _check_precisions(recipe: Recipe, profiles: dict[str, Any]) -> None:
    from edgesmith.compress import get_pass

    for name, prof in profiles.items():
        for p in recipe.passes:
            prec = get_pass(p.type).precision
            if prec and prec not in prof.precisions:
                raise ConfigError(f"pass {p.type!r} produces {prec}, which target {name!r} does not allow (allowed: {', '.join(prof.precisions)})",
                                  hint="drop the pass or choose a target profile that lists that precision")


def _load_data(recipe: Recipe, specs: list[InputSpec], base_dir: Path, needs_calibration: bool) -> tuple[Any, Any]:
    from edgesmith.data import load_dataset

    def load(src: Any, role: str) -> Any:
        return load_dataset(src.source, specs, role=role, split=src.split, samples=src.samples, batch_size=src.batch_size, base_dir=base_dir)

    calib = load(recipe.data.calibration, "calibration") if (needs_calibration and recipe.data.calibration) else None
    if needs_calibration and calib is None:
        raise ConfigError("a pass needs calibration data but the recipe has none", hint="add `data: {calibration: {source: digits}}` or --data")
    evaluation = load(recipe.data.evaluation, "evaluation") if recipe.data.evaluation else None
    if evaluation is not None and recipe.metric == "top1" and not evaluation.has_labels:
        from edgesmith.errors import InputError

        raise InputError(f"metric top1 needs labels, and the evaluation data {evaluation.name} has none",
                         hint="add labels (npz key `labels`), or use --metric fidelity to compare against the float model")
    return calib, evaluation


def _execute(recipe: Recipe, base_dir: Path, kind: str, profiles: dict[str, Any], staged: Any,
             trust_checkpoint: bool, rep: Reporter) -> dict[str, Any]:
    from edgesmith.compress import PassContext, get_pass
    from edgesmith.compress.registry import config_as_dict
    from edgesmith.model_io import load_model, resolve
    from edgesmith.outputs import sha256

    manifest: dict[str, Any] = {
        "recipe": {**recipe.model_dump(mode="json"), "passes": [p.as_yaml() for p in recipe.passes]},
        "versions": library_versions(),
        "host": host_info(),
        "inputs": {}, "targets": {},
    }
    if kind != "onnx":
        from edgesmith._lazy import require

        require("torch")  # building from a PyTorch model needs the build extra
    with rep.step(f"loading model {recipe.model.source}"):
        loaded = load_model(recipe.model, base_dir, trust_checkpoint)
        specs = resolve_inputs(recipe, loaded)
        if loaded.module is not None:
            from edgesmith.export.onnx_export import probe_forward

            probe_forward(loaded.module, specs)  # a spec that does not fit the model fails here, before data
    input_files = ([recipe.model.source] if kind in ("onnx", "pt2") else []) + ([recipe.model.weights] if recipe.model.weights else [])
    for ref in input_files:
        manifest["inputs"][ref] = sha256(resolve(ref, base_dir))
    passes = [(p, get_pass(p.type), p.config()) for p in recipe.passes]
    needs_calibration = any(info.needs_calibration for _, info, _ in passes)
    with rep.step("loading and checking data"):
        calib, evaluation = _load_data(recipe, specs, base_dir, needs_calibration)
    manifest["data"] = {"calibration": calib and {"name": calib.name, "samples": calib.num_samples},
                        "evaluation": evaluation and {"name": evaluation.name, "samples": evaluation.num_samples, "labels": evaluation.has_labels}}
    if evaluation is not None and recipe.stop_after == "validate":
        # the device bundle: evaluation data travels with the artifacts (see edgesmith.device)
        import numpy as np

        arrays = {f"input:{k}": v for k, v in evaluation.first(evaluation.num_samples).items()}
        if evaluation.has_labels:
            arrays["labels"] = evaluation.labels()
        np.savez(staged.path("bundle/eval_data.npz"), **arrays)

    # export the float model (the reference every target is judged against), then torch-level passes
    # and, if any ran, export their result as the start of the ONNX passes
    if kind == "onnx":
        fp32_path = loaded.onnx_path
        manifest["export"] = None
    else:
        fp32_path = staged.path("model.onnx")
        manifest["export"] = _export(recipe, loaded.module, loaded.program if kind == "pt2" else None, specs, fp32_path,
                                     evaluation or calib, rep, "float model")
    start_path = fp32_path
    module = loaded.module
    torch_notes: list[str] = []
    torch_details: dict[str, Any] = {}
    scratch: dict[str, Any] = {}
    torch_passes = [(info, cfg) for _, info, cfg in passes if info.stage == "torch"]
    if torch_passes:
        import copy
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's internal deprecation when copying GraphModules
            module = copy.deepcopy(loaded.module)  # NOTE: passes may work in place; the float model stays intact
        for info, cfg in torch_passes:
            ctx = PassContext(work_dir=staged.work, input_specs=tuple(specs), calibration=calib, scratch=scratch)
            with rep.step(f"torch pass {info.name}"):
                module = info.apply(module, cfg, ctx)
            torch_notes += ctx.notes
            torch_details.update(ctx.details)
        manifest["torch_passes"] = torch_details
        start_path = staged.path("model.torch_passes.onnx")
        quantized = any(info.precision == "int8" for info, _ in torch_passes)
        manifest["export_after_torch_passes"] = _export(recipe, module, None, specs, start_path, evaluation or calib, rep,
                                                        "model after torch passes", quantized=quantized)
    if recipe.stop_after == "export":
        manifest["verdict"] = "exported"
        return manifest
    reference_path = fp32_path
    if recipe.model.reference:
        from edgesmith.model_io import onnx_input_specs

        reference_path = resolve(recipe.model.reference, base_dir)
        if not reference_path.is_file():
            from edgesmith.errors import InputError

            raise InputError(f"reference model not found: {reference_path}", hint="give the float ONNX model the candidate was made from")
        _check_against_onnx(specs, onnx_input_specs(reference_path))
        manifest["inputs"][recipe.model.reference] = sha256(reference_path)

    for name, profile in profiles.items():
        manifest["targets"][name] = _run_target(recipe, name, profile, passes, start_path, reference_path, specs, calib,
                                                evaluation, staged, rep, torch_notes, torch_details, scratch)
    statuses = [t["verdict"] for t in manifest["targets"].values()]
    manifest["verdict"] = "fail" if "fail" in statuses else ("pass" if statuses and all(s == "pass" for s in statuses) else (statuses[0] if statuses else "pass"))
    manifest["pass_configs"] = {p.type: config_as_dict(cfg) for p, _, cfg in passes}
    return manifest


# a quantized torch graph runs on ONNX Runtime's integer kernels, torch runs reference quantize/dequantize
# ops: they agree to quantization noise, not to float rounding; below this the export itself is broken
QUANTIZED_PARITY_MIN_COSINE = 0.999


def _export(recipe: Recipe, module: Any, program: Any, specs: list, path: Path, data: Any, rep: Reporter, what: str,
            quantized: bool = False) -> dict:
    from edgesmith.export import check_parity, export_onnx
    from edgesmith.export.onnx_export import example_inputs

    with rep.step(f"exporting the {what} to ONNX (opset {recipe.export.opset})"):
        export_onnx(module, specs, path, opset=recipe.export.opset, exporter=recipe.export.exporter, program=program)
    with rep.step("checking ONNX Runtime against torch"):
        n = recipe.export.parity_samples
        feeds = data.first(n) if data is not None else example_inputs(specs, n)
        parity = check_parity(module, path, feeds, specs, recipe.export.parity_atol, recipe.export.parity_rtol)
    if quantized and not parity.ok and parity.min_cosine >= QUANTIZED_PARITY_MIN_COSINE:
        return {"path": path.name, "opset": recipe.export.opset, "exporter": recipe.export.exporter, "mb": _mb(path),
                "parity": f"{parity.describe()}; accepted for a quantized graph (integer kernels vs torch's reference ops): "
                          f"cosine {parity.min_cosine:.5f} >= {QUANTIZED_PARITY_MIN_COSINE}", "parity_max_abs": parity.max_abs}
    if not parity.ok:
        raise ExportError(f"ONNX Runtime output differs from torch ({what}): {parity.describe()}",
                          hint="raise export.parity_atol/parity_rtol if that is acceptable, or try `export: {exporter: torchscript}`")
    return {"path": path.name, "opset": recipe.export.opset, "exporter": recipe.export.exporter,
            "mb": _mb(path), "parity": parity.describe(), "parity_max_abs": parity.max_abs}


def _safe_dir(name: str) -> str:
    # NOTE: a target may be a profile *path*; never let it steer where we write
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).stem) or "target"


def _run_target(recipe: Recipe, name: str, profile: Any, passes: list, fp32_path: Path, reference_path: Path, specs: list, calib: Any,
                evaluation: Any, staged: Any, rep: Reporter, torch_notes: list[str],
                torch_details: dict[str, Any], scratch: dict[str, Any]) -> dict[str, Any]:
    from edgesmith.compress import PassContext
    from edgesmith.runtime import get_backend

    tdir = _safe_dir(profile.name or name)
    backend = get_backend(profile.backend)
    ctx = PassContext(work_dir=staged.work / tdir, profile=profile, input_specs=tuple(specs), calibration=calib, evaluation=evaluation,
                      notes=list(torch_notes),
                      details=dict(torch_details), scratch=scratch)
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    current = fp32_path
    for _, info, cfg in passes:
        if info.stage == "onnx":
            with rep.step(f"[{name}] {info.name}"):
                current = info.apply(current, cfg, ctx)
    compressed = current
    if compressed == fp32_path and reference_path == fp32_path:
        ctx.note("no pass ran and no --reference/model.reference was given: the model is compared with itself, "
                 "so degradation budgets pass trivially; give the float model as reference")
    result: dict[str, Any] = {"profile": profile.model_dump(mode="json"), "estimated": profile.estimated, "notes": ctx.notes,
                              "details": ctx.details, "artifacts": [], "verdict": "pass"}
    if compressed != fp32_path:
        dest = staged.path(f"{tdir}/{compressed.name}")
        dest.write_bytes(compressed.read_bytes())
        compressed = dest
        result["artifacts"].append({"path": f"{tdir}/{dest.name}", "what": "compressed ONNX", "mb": _mb(dest)})
    result["size"] = {"fp32_mb": _mb(reference_path), "compressed_mb": _mb(compressed), "ratio": _mb(reference_path) / max(_mb(compressed), 1e-9)}
    if recipe.stop_after == "passes":
        result["verdict"] = "compressed"
        return result
    with rep.step(f"[{name}] compiling for {profile.backend}"):
        suffix = backend.artifact_suffix
        artifact = backend.compile(compressed, staged.path(f"{tdir}/model.{profile.backend}{suffix}"), profile, specs, calib)
        fp32_artifact = backend.compile(reference_path, ctx.work_dir / f"fp32.{profile.backend}{suffix}", profile, specs, calib)
    if artifact.options.get("int8_from"):
        ctx.note(f"{profile.backend} INT8 source: {artifact.options['int8_from']}")
    for f in sorted(artifact.path.parent.glob(artifact.path.stem + ".*")):  # IR comes as .xml + .bin
        result["artifacts"].append({"path": f"{tdir}/{f.name}", "what": f"compiled for {profile.backend} ({artifact.options})", "mb": _mb(f)})
    if recipe.stop_after == "compile":
        result["verdict"] = "compiled"
        return result
    metrics, reference, latency, ref_out, samples = _validate(recipe, profile, backend, artifact, fp32_artifact, specs, evaluation, calib, rep, name)
    result["bundle"] = {"artifact": f"{tdir}/{artifact.path.name}", "artifact_options": artifact.options,
                        "float_model": reference_path.name if reference_path.parent == staged.stage else None}
    if ref_out is not None:
        import numpy as np

        np.savez(staged.path(f"bundle/{tdir}.reference_outputs.npz"), *ref_out)
        result["bundle"]["reference_outputs"] = f"bundle/{tdir}.reference_outputs.npz"
    metrics["artifact_mb"] = sum(_mb(f) for f in artifact.path.parent.glob(artifact.path.stem + ".*"))
    from edgesmith.validate import judge, overall

    verdicts = judge(profile, metrics, reference)
    result.update(metrics=metrics, reference_metrics=reference, latency=latency, samples=samples,
                  verdicts=[v.as_dict() for v in verdicts], verdict=overall(verdicts))
    return result


def _validate(recipe: Recipe, profile: Any, backend: Any, artifact: Any, fp32_artifact: Any, specs: list,
              evaluation: Any, calib: Any, rep: Reporter, name: str) -> tuple[dict, dict, dict, Any, dict]:
    from edgesmith.model_io import import_object
    from edgesmith.runtime.bench import benchmark_against, make_feeds
    from edgesmith.validate import correct_bits, fidelity, record_latency, run_dataset, task_metrics

    metrics: dict[str, Any] = {}
    reference: dict[str, Any] = {}
    samples: dict[str, Any] = {}
    ref_out = None
    if evaluation is not None:
        user_fn: Callable | None = None
        if recipe.metric not in ("top1", "fidelity"):
            user_fn = import_object(recipe.metric, "metric function")
        with rep.step(f"[{name}] evaluating on {evaluation.num_samples} samples"):
            ref_out = run_dataset(backend.load(fp32_artifact, profile.threads), evaluation)
            cand_out = run_dataset(backend.load(artifact, profile.threads), evaluation)
            labels = evaluation.labels()
            reference.update(task_metrics(ref_out, labels, recipe.metric, user_fn))
            metrics.update(task_metrics(cand_out, labels, recipe.metric, user_fn))
            metrics.update(fidelity(ref_out, cand_out))
            reference.update(cosine=1.0, sqnr_db=float("inf"))
            if recipe.metric == "top1":
                samples = {"n": len(labels), "top1_correct": correct_bits(cand_out[0], labels),
                           "reference_top1_correct": correct_bits(ref_out[0], labels)}
    real = (evaluation or calib).first(max(profile.batch_sizes)) if (evaluation or calib) else None
    latency: dict[str, dict] = {"compressed": {}, "fp32": {}}
    for batch in profile.batch_sizes:
        feeds = make_feeds(specs, batch, real)
        with rep.step(f"[{name}] benchmarking batch {batch} ({profile.threads} threads)"):
            cand, base = benchmark_against(artifact, fp32_artifact, feeds, profile.threads, recipe.bench.warmup,
                                           recipe.bench.iterations, recipe.bench.duration_s)
        record_latency(metrics, reference, batch, cand, base, latency, batch == profile.batch_sizes[0])
    return metrics, reference, latency, ref_out, samples
