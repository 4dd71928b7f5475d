"""Run a Recipe: model -> torch passes -> export -> ONNX passes -> compile -> evaluate -> judge -> report.

ONNX-level passes and compilation run once per target, because their defaults come from the
target profile (e.g. uint8 activations where VNNI makes them fast). ``passes: auto`` is not run
here: the layer above (``edgesmith.api.run``) hands such a recipe to ``optimize``.
"""

from __future__ import annotations

import copy
import gzip
import shutil
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith._lazy import quiet_onnxruntime, require
from edgesmith.cache import cached, file_digest, identity
from edgesmith.compress import PassContext, get_pass
from edgesmith.compress.contract import Records
from edgesmith.compress.distill.checkpoint import Checkpoints
from edgesmith.compress.registry import check_float_graph, config_as_dict
from edgesmith.data import run_data
from edgesmith.data.run_data import data_record, load_data, write_eval_bundle
from edgesmith.environment import host_info, library_versions
from edgesmith.errors import ConfigError, ExportError, InputError, data_refusals_named
from edgesmith.evaluate import Evaluator, judge, overall, time_against_float
from edgesmith.evaluate.judge import busy_machine
from edgesmith.export import check_parity, export_onnx
from edgesmith.export.onnx_export import example_inputs, probe_forward
from edgesmith.model_io import check_specs_against_onnx, load_model, model_kind, onnx_input_specs, resolve, self_contained
from edgesmith.outputs import CHECKPOINTS, StagedOutput, check_resumable, sha256
from edgesmith.plan import Plan, check_pass_order, needs_data, preflight, resolve_inputs, resolve_plan
from edgesmith.progress import Reporter
from edgesmith.recipe import InputSpec, Recipe
from edgesmith.reporting.document import to_html, to_junit, to_markdown
from edgesmith.reporting.runs import runs_report
from edgesmith.runtime import get_backend
from edgesmith.runtime.base import same_file
from edgesmith.runtime.custom_ops import LOWERING_PASS, file_domains
from edgesmith.schema import fixed_batch

__all__ = ["Reporter", "RunResult", "SearchSetup", "check_pass_order", "export_once", "load_data", "needs_data", "resolve_inputs", "run", "search_setup"]


@dataclass
class RunResult:
    out_dir: Path | None
    manifest: dict[str, Any]
    verdict: str
    dry_run: bool = False
    plan: list[str] = field(default_factory=list)


def _mb(path: Path) -> float:
    return path.stat().st_size / 2**20


SPARSE_PASSES = ("prune_magnitude", "prune_nm", "prune_l0", "subnetwork")  # passes whose zeros only deflate shrinks


def _ship_gzipped(artifact: Any, staged: Any, tdir: str, result: dict) -> None:
    """The compiled artifact gzipped under ``<target>/download/``: the file a device downloads, which is where
    sparse weights shrink (kept out of the artifact's folder so its size and bundle are unchanged)."""

    for f in sorted(artifact.path.parent.glob(artifact.path.stem + ".*")):
        dest = staged.path(f"{tdir}/download/{f.name}.gz")
        with open(f, "rb") as src, gzip.open(dest, "wb", compresslevel=6) as out:
            shutil.copyfileobj(src, out)
        result["artifacts"].append(
            {
                "path": f"{tdir}/download/{dest.name}",
                "mb": _mb(dest),
                "what": f"gzip of {f.name}, the download (zeros of sparse weights compress; {_mb(f):.3f} MB unpacked)",
            }
        )


def _deflate_mb(path: Path) -> float:
    """Size after deflate (zlib level 6), streamed: what a compressed download of the file costs. Zeros from
    pruning shrink this, not the raw file (dense runtimes load dense weights)."""
    z, total = zlib.compressobj(6), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            total += len(z.compress(chunk))
    return (total + len(z.flush())) / 2**20


def run(
    recipe: Recipe,
    base_dir: Path,
    *,
    out_dir: Path | None = None,
    trust_checkpoint: bool = False,
    dry_run: bool = False,
    reporter: Reporter | None = None,
    force: bool = False,
    keep: tuple[str, ...] = (),
    cache: Any = None,
    measure_latency: bool = True,
    resume: bool = False,
) -> RunResult:
    """Run ``recipe`` into ``out_dir`` (default: the recipe's ``output_dir``). The folder must be new, empty
    or an earlier run (replaced whole); ``force`` writes into another folder, ``keep`` names files of it
    the new run leaves in place. ``cache`` (edgesmith.cache.PassCache) gives exports and pass results with the
    same inputs and configuration. ``measure_latency=False``: accuracy and size only (a search times its trials
    later). Training passes keep checkpoints in ``OUT/checkpoints`` (until done); ``resume`` continues from them."""

    rep = reporter or Reporter()
    out = Path(out_dir or recipe.output_dir)
    if not out.is_absolute() and out_dir is None:
        out = base_dir / out
    if recipe.optimize and not dry_run:
        raise ConfigError("`passes: auto` is run by optimize, not by the pipeline", hint="use edgesmith.run(recipe) or `edgesmith run`")
    plan = resolve_plan(recipe, base_dir, out)
    if dry_run:
        preflight(plan, force)
        return RunResult(None, {"recipe": recipe.model_dump(mode="json")}, "dry-run", dry_run=True, plan=plan.steps())
    started = time.time()
    quiet_onnxruntime()
    if resume:
        check_resumable(out)
    with StagedOutput(out, force=force or resume, keep=keep) as staged:  # NOTE: checks the output-folder policy itself
        points = Checkpoints(staged.final / CHECKPOINTS, recipe.model_dump(mode="json"), resume)
        try:
            with data_refusals_named():  # NOTE: whichever library ran the user's model on the user's data
                manifest = _execute(plan, staged, trust_checkpoint, rep, _Options(cache, measure_latency, checkpoints=points))
        except KeyboardInterrupt as exc:  # and SIGTERM (a KeyboardInterrupt): say what survives for --resume
            if any((staged.final / CHECKPOINTS).glob("*.pt")):
                exc.kept = f"training checkpoints kept in {staged.final / CHECKPOINTS}: the same command with --resume continues"  # type: ignore[attr-defined]
            raise
        manifest["duration_s"] = round(time.time() - started, 2)

        doc = runs_report([("run", manifest)])
        for name, writer in (("report.md", to_markdown), ("report.html", to_html), ("report.junit.xml", to_junit)):
            staged.path(name).write_text(writer(doc))
        staged.commit(manifest)
    return RunResult(out, manifest, manifest["verdict"])


def export_once(recipe: Recipe, base_dir: Path, work: Path, trust_checkpoint: bool = False, cache: Any = None) -> tuple[Path, Path]:
    """Export the float model (and the model after the recipe's torch passes) once, for a search:
    returns (float model, start of the ONNX passes). ``cache`` (a PassCache): the export and the torch
    passes come from it when they ran before (the search's cache: one cache for every preset)."""

    if model_kind(recipe.model.source, base_dir) == "onnx":  # nothing to export: the file is the float model (checked as ONNX here)
        path = resolve(recipe.model.source, base_dir)
        onnx_input_specs(path)
        return (one := self_contained(path)), one
    torch_passes = [p for p in recipe.passes if get_pass(p.type).stage == "torch"]
    run(
        recipe.model_copy(update={"passes": torch_passes, "stop_after": "export", "optimize": False}),
        base_dir,
        out_dir=work / "export",
        trust_checkpoint=trust_checkpoint,
        cache=cache,
    )
    float_path = work / "export" / "model.onnx"
    start = work / "export" / "model.torch_passes.onnx"
    return float_path, (start if start.is_file() else float_path)


@dataclass
class SearchSetup:
    """What a search over one export judges candidates with: inputs, data, the evaluator and the float
    reference on the target's runtime (computed once, from the disk cache when seen before)."""

    specs: list
    calibration: Any
    evaluation: Any
    backend: Any
    evaluator: Any
    reference: Any


def search_setup(recipe: Recipe, base_dir: Path, float_path: Path, profile: Any, work: Path) -> SearchSetup:

    specs = list(recipe.inputs) if recipe.inputs else [InputSpec.model_validate(s) for s in onnx_input_specs(float_path)]
    calib, evaluation = load_data(recipe, specs, base_dir, True)
    backend = get_backend(profile.backend)
    evaluator = Evaluator(evaluation, recipe.metric)
    fp32 = backend.compile(float_path, work / f"fp32{backend.artifact_suffix}", profile, specs)
    return SearchSetup(specs, calib, evaluation, backend, evaluator, evaluator.reference(backend, fp32, profile.threads))


@dataclass
class _Model:
    """What the torch stage hands on: the float ONNX, the start of the ONNX passes, and the pass records."""

    fp32_path: Path
    start_path: Path
    records: Any
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Options:
    cache: Any = None  # edgesmith.cache.PassCache
    measure_latency: bool = True
    identity: dict[str, Any] = field(default_factory=dict)  # what determines the exported model (cache keys)
    checkpoints: Any = None  # distill.checkpoint.Checkpoints of the run folder


def _execute(plan: Plan, staged: Any, trust_checkpoint: bool, rep: Reporter, opts: _Options | None = None) -> dict[str, Any]:

    recipe, base_dir, kind, passes = plan.recipe, plan.base_dir, plan.kind, plan.passes

    manifest: dict[str, Any] = {
        "recipe": {**recipe.model_dump(mode="json"), "passes": [p.as_yaml() for p in recipe.passes]},
        "versions": library_versions(),
        "host": host_info(),
        "inputs": {},
        "targets": {},
    }
    loaded, specs = _load_model(recipe, base_dir, kind, trust_checkpoint, manifest, rep)
    with rep.step("loading and checking data"):
        calib, evaluation = load_data(recipe, specs, base_dir, plan.reads_calibration, loaded, rep)
    manifest["data"] = {
        "calibration": calib and data_record(calib),
        "evaluation": evaluation and {**data_record(evaluation, digest=True), "labels": evaluation.has_labels},
    }
    for ds in (calib, evaluation):
        for note in ds.notes if ds is not None else []:
            rep.info(note)
    if evaluation is not None and recipe.stop_after == "validate":
        evaluation.bundle_samples = write_eval_bundle(evaluation, staged.path)
        if evaluation.bundle_samples < evaluation.num_samples:
            manifest["data"]["evaluation"]["bundle_samples"] = evaluation.bundle_samples
            rep.info(
                f"the device bundle carries {evaluation.bundle_samples} of {evaluation.num_samples} evaluation samples "
                f"(at most {run_data.BUNDLE_MAX_BYTES >> 20} MB); `validate RUN_DIR` on a device judges those"
            )
    opts = opts or _Options()
    if opts.cache is not None:
        opts.identity = identity(recipe, base_dir, kind, specs, manifest["inputs"], {"calibration": calib, "evaluation": evaluation})
        manifest["cache"] = {"folder": str(opts.cache.root), "notes": list(opts.cache.notes)}
    model = _torch_stage(recipe, kind, loaded, specs, passes, calib, evaluation, staged, manifest, rep, opts)
    if recipe.stop_after == "export":
        manifest["verdict"] = "exported"
        return manifest
    reference_path = _reference_path(recipe, base_dir, model.fp32_path, specs, manifest)
    for name, planned in plan.profiles.items():
        profile, note = planned.for_fixed_batch(fixed_batch(specs), name)
        rep.info(note) if note else None
        manifest["targets"][name] = _run_target(recipe, name, profile, passes, model, reference_path, specs, calib, evaluation, staged, rep, opts)
    statuses = [t["verdict"] for t in manifest["targets"].values()]
    manifest["verdict"] = (
        "fail"
        if "fail" in statuses
        else "inconclusive"
        if "inconclusive" in statuses
        else ("pass" if statuses and all(s == "pass" for s in statuses) else (statuses[0] if statuses else "pass"))
    )
    manifest["pass_configs"] = {p.type: config_as_dict(cfg) for p, _, cfg in passes}
    if opts.cache is not None:
        manifest["cache"]["events"] = [{"what": w, "result": r} for w, r in opts.cache.events]
    return manifest


def _load_model(recipe: Recipe, base_dir: Path, kind: str, trust_checkpoint: bool, manifest: dict, rep: Reporter) -> tuple[Any, list]:

    if kind != "onnx":
        require("torch")  # building from a PyTorch model needs the build extra
    with rep.step(f"loading model {recipe.model.source}"):
        loaded = load_model(recipe.model, base_dir, trust_checkpoint)
        specs = resolve_inputs(recipe, loaded)
        if loaded.module is not None:
            probe_forward(loaded.module, specs)  # a spec that does not fit the model fails here, before data
    input_files = ([recipe.model.source] if kind in ("onnx", "pt2", "torchscript") else []) + ([recipe.model.weights] if recipe.model.weights else [])
    for ref in input_files:  # NOTE: an ONNX model as loaded: external weights inside, so they are hashed (the cache's key)
        manifest["inputs"][ref] = sha256(loaded.onnx_path if loaded.onnx_path and ref == recipe.model.source else resolve(ref, base_dir))
    if kind == "hf":  # a folder is identified by its config, weights and tokenizer files
        folder = resolve(recipe.model.source, base_dir)
        for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors", ".bin", ".txt", ".model")):
            manifest["inputs"][str(f.relative_to(folder))] = sha256(f)
    if loaded.description:
        manifest["model"] = {"kind": kind, "description": loaded.description}
    return loaded, specs


def _parameters(module: Any) -> int | None:
    return sum(int(p.numel()) for p in module.parameters()) if module is not None and hasattr(module, "parameters") else None


def _torch_stage(
    recipe: Recipe, kind: str, loaded: Any, specs: list, passes: list, calib: Any, evaluation: Any, staged: Any, manifest: dict, rep: Reporter, opts: _Options
) -> _Model:
    """Export the float model (the reference every target is judged against), then run the torch
    passes and, if any ran, export their result (re-checked for parity against the changed model) as
    the start of the ONNX passes. Both exports come from the cache when it holds them."""

    if kind == "onnx":
        manifest["export"] = None
        fp32_path = loaded.onnx_path
    else:
        fp32_path = staged.path("model.onnx")
        record: dict[str, Any] = {}

        def export_float() -> Path:
            record.update(_export(recipe, loaded.module, loaded.program if kind == "pt2" else None, specs, fp32_path, evaluation or calib, rep, "float model"))
            return fp32_path

        # NOTE: the export reads one data set (its sample inputs): keyed by that one's content only, so a run that loads
        # no calibration data (a search's float reference) and one that does share the export
        read = "evaluation" if evaluation is not None else "calibration"
        ident = {**opts.identity, "data_content": {k: v for k, v in opts.identity.get("data_content", {}).items() if k == read}}
        cached(opts.cache, ident, "float export", {}, fp32_path.parent, export_float, extra=record)
        manifest["export"] = record
    model = _Model(fp32_path, fp32_path, Records())
    torch_passes = [(info, cfg) for _, info, cfg in passes if info.stage == "torch"]
    if not torch_passes:
        return model
    ctx = PassContext(work_dir=staged.work, input_specs=tuple(specs), calibration=calib, records=model.records, checkpoints=opts.checkpoints if opts else None)
    extra: dict[str, Any] = {}

    def run_passes() -> Path:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's internal deprecation when copying GraphModules
            module = copy.deepcopy(loaded.module)  # NOTE: passes may work in place; the float model stays intact
        for info, cfg in torch_passes:
            with rep.step(f"torch pass {info.name}"):
                module = info.apply(module, cfg, ctx)
        path = staged.path("model.torch_passes.onnx")
        quantized = any(info.precision == "int8" for info, _ in torch_passes)
        extra["parameters"] = {
            "float": _parameters(loaded.module),
            "after_torch_passes": _parameters(module),
            "architecture_changed": any(info.changes_architecture for info, _ in torch_passes),
        }
        extra["export_after_torch_passes"] = _export(
            recipe, module, None, specs, path, evaluation or calib, rep, "model after torch passes", quantized=quantized
        )
        return path

    material = {"torch_passes": [[info.name, config_as_dict(cfg)] for info, cfg in torch_passes]}
    model.start_path = cached(opts.cache, opts.identity, "torch passes", material, staged.path("model.torch_passes.onnx").parent, run_passes, ctx, extra)
    model.notes += ctx.notes
    model.details.update(ctx.details)
    manifest["torch_passes"] = model.details
    manifest["parameters"] = extra["parameters"]
    manifest["export_after_torch_passes"] = extra["export_after_torch_passes"]
    return model


def _reference_path(recipe: Recipe, base_dir: Path, fp32_path: Path, specs: list, manifest: dict) -> Path:
    if not recipe.model.reference:
        return fp32_path

    reference_path = resolve(recipe.model.reference, base_dir)
    if not reference_path.is_file():
        raise InputError(f"reference model not found: {reference_path}", hint="give the float ONNX model the candidate was made from")
    check_specs_against_onnx(specs, onnx_input_specs(reference_path))
    manifest["inputs"][recipe.model.reference] = sha256(reference_path := self_contained(reference_path))  # its weights hashed too
    return reference_path


# a quantized torch graph runs on ONNX Runtime's integer kernels, torch runs reference quantize/dequantize
# ops: they agree to quantization noise, not to float rounding; below this the export itself is broken
QUANTIZED_PARITY_MIN_COSINE = 0.999


def _export(recipe: Recipe, module: Any, program: Any, specs: list, path: Path, data: Any, rep: Reporter, what: str, quantized: bool = False) -> dict:
    with rep.step(f"exporting the {what} to ONNX (opset {recipe.export.opset})"):
        export_onnx(module, specs, path, opset=recipe.export.opset, exporter=recipe.export.exporter, program=program, output_names=recipe.outputs)
    with rep.step("checking ONNX Runtime against torch"):
        n = min(recipe.export.parity_samples, fixed_batch(specs) or recipe.export.parity_samples)  # a fixed batch: that many
        feeds = data.first(n) if data is not None else example_inputs(specs, n)
        parity = check_parity(module, path, feeds, specs, recipe.export.parity_atol, recipe.export.parity_rtol)
    if quantized and not parity.ok and parity.min_cosine >= QUANTIZED_PARITY_MIN_COSINE:
        return {
            "path": path.name,
            "opset": recipe.export.opset,
            "exporter": recipe.export.exporter,
            "mb": _mb(path),
            "parity": f"{parity.describe()}; accepted for a quantized graph (integer kernels vs torch's reference ops): "
            f"cosine {parity.min_cosine:.5f} >= {QUANTIZED_PARITY_MIN_COSINE}",
            "parity_max_abs": parity.max_abs,
        }
    if not parity.ok:
        raise ExportError(
            f"ONNX Runtime output differs from torch ({what}): {parity.describe()}",
            hint="raise export.parity_atol/parity_rtol if that is acceptable, or try `export: {exporter: torchscript}`",
        )
    return {
        "path": path.name,
        "opset": recipe.export.opset,
        "exporter": recipe.export.exporter,
        "mb": _mb(path),
        "parity": parity.describe(),
        "parity_max_abs": parity.max_abs,
    }


def _check_custom_ops(info: Any, path: Path) -> None:
    """An ONNX pass sees custom-domain ops only if it declares it handles them (quantizers do not); a quantizer, a float graph."""
    check_float_graph(info, path)
    found = file_domains(path)
    foreign = {d: ops for d, ops in found.items() if d not in info.custom_ops and "*" not in info.custom_ops}
    if foreign:
        d, ops = next(iter(sorted(foreign.items())))
        raise ConfigError(
            f"pass {info.name!r} cannot process custom ops of domain {d!r} ({', '.join(sorted(ops))}) in {path.name}",
            hint=f"put `{LOWERING_PASS}` before it to turn them into standard ONNX ops, or drop the pass",
        )


def _safe_dir(name: str) -> str:
    # NOTE: a target may be a profile *path*; never let it steer where we write
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).stem) or "target"


def _onnx_passes(passes: list, start: Path, profile: Any, name: str, ctx: Any, rep: Reporter, opts: _Options) -> Path:
    """The ONNX-stage passes for one target, each result taken from the cache when it holds it."""

    compressed = start
    for i, (_, info, cfg) in enumerate(passes):
        if info.stage == "onnx":
            _check_custom_ops(info, compressed)
            material = {"input": file_digest(compressed), "pass": info.name, "config": config_as_dict(cfg), "profile": profile.model_dump(mode="json")}
            with rep.step(f"[{name}] {info.name}"):
                compressed = cached(
                    opts.cache,
                    opts.identity,
                    info.name,
                    material,
                    ctx.work_dir / f"cached-{i}",
                    lambda c=compressed, info=info, cfg=cfg: info.apply(c, cfg, ctx),
                    ctx,
                )
    return compressed


def _sizes(reference_path: Path, compressed: Path, ctx: Any) -> dict[str, float]:
    """File sizes, and the deflated sizes where a sparse pass ran (its zeros shrink only the download)."""
    size = {"fp32_mb": _mb(reference_path), "compressed_mb": _mb(compressed), "ratio": _mb(reference_path) / max(_mb(compressed), 1e-9)}
    if any(k in ctx.details for k in SPARSE_PASSES):
        # NOTE: ONNX sparse initializers were measured on an 80%-sparse ResNet: 1.65x smaller raw, no smaller
        # after deflate than the dense file (183 vs 187 KB), and OpenVINO's ONNX frontend cannot read them
        fz, cz = _deflate_mb(reference_path), _deflate_mb(compressed)
        size.update(fp32_deflate_mb=fz, compressed_deflate_mb=cz, deflate_ratio=fz / max(cz, 1e-9))
        ctx.note(
            f"sparse weights: the compressed ONNX deflates to {cz:.3f} MB against {fz:.3f} MB for the float one "
            f"({fz / max(cz, 1e-9):.2f}x smaller to ship); dense runtimes load and run it at full size"
        )
    return size


def _run_target(
    recipe: Recipe,
    name: str,
    profile: Any,
    passes: list,
    model: _Model,
    reference_path: Path,
    specs: list,
    calib: Any,
    evaluation: Any,
    staged: Any,
    rep: Reporter,
    opts: _Options,
) -> dict[str, Any]:

    tdir = _safe_dir(profile.name or name)
    backend = get_backend(profile.backend)
    ctx = PassContext(
        work_dir=staged.work / tdir,
        profile=profile,
        input_specs=tuple(specs),
        calibration=calib,
        evaluation=evaluation,
        notes=list(model.notes),
        details=dict(model.details),
        records=model.records,
    )
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    compressed = _onnx_passes(passes, model.start_path, profile, name, ctx, rep, opts)
    if compressed == model.fp32_path and reference_path == model.fp32_path:
        ctx.note(
            "no pass ran and no --reference/model.reference was given: the model is compared with itself, "
            "so degradation budgets pass trivially; give the float model as reference"
        )
    result: dict[str, Any] = {
        "profile": profile.model_dump(mode="json"),
        "estimated": profile.estimated,
        "notes": ctx.notes,
        "details": ctx.details,
        "artifacts": [],
        "verdict": "pass",
    }
    if compressed != model.fp32_path:
        dest = staged.path(f"{tdir}/{compressed.name}")
        dest.write_bytes(compressed.read_bytes())
        compressed = dest
        result["artifacts"].append({"path": f"{tdir}/{dest.name}", "what": "compressed ONNX", "mb": _mb(dest)})
    result["size"] = _sizes(reference_path, compressed, ctx)
    if recipe.stop_after == "passes":
        result["verdict"] = "compressed"
        return result
    with rep.step(f"[{name}] compiling for {profile.backend}"):
        suffix = backend.artifact_suffix
        artifact = backend.compile(compressed, staged.path(f"{tdir}/model.{profile.backend}{suffix}"), profile, specs, calib)
        if same_file(compressed, reference_path):  # no pass changed the model: one compile, timed as itself (speed-up exactly 1)
            fp32_artifact = artifact
        else:
            fp32_artifact = backend.compile(reference_path, ctx.work_dir / f"fp32.{profile.backend}{suffix}", profile, specs, calib)
    if artifact.options.get("int8_from"):
        ctx.note(f"{profile.backend} INT8 source: {artifact.options['int8_from']}")
    for f in sorted(artifact.path.parent.glob(artifact.path.stem + ".*")):  # IR comes as .xml + .bin
        result["artifacts"].append({"path": f"{tdir}/{f.name}", "what": f"compiled for {profile.backend} ({artifact.options})", "mb": _mb(f)})
    if "deflate_ratio" in result["size"]:
        _ship_gzipped(artifact, staged, tdir, result)
    if recipe.stop_after == "compile":
        result["verdict"] = "compiled"
        return result
    result.update(_validate(recipe, profile, backend, artifact, fp32_artifact, specs, evaluation, calib, rep, name, opts.measure_latency))
    _bundle(result, profile, artifact, reference_path, evaluation, staged, tdir, ctx)
    return result


def _bundle(result: dict, profile: Any, artifact: Any, reference_path: Path, evaluation: Any, staged: Any, tdir: str, ctx: Any) -> None:
    """Notes on batches timed on a busy machine, and what the device bundle carries for this target."""
    for b in profile.batch_sizes:
        busy = busy_machine(result.get("latency"), b)
        if busy:
            ctx.note(
                f"batch {b} was timed while the machine was busy ({busy}): its latency and speed-up are not "
                "claimed and no latency budget was judged on them; re-run on a quiet machine"
            )
    result["bundle"] = {
        "artifact": f"{tdir}/{artifact.path.name}",
        "artifact_options": artifact.options,
        "float_model": reference_path.name if reference_path.parent == staged.stage else None,
    }
    ref_out = result.pop("_reference_outputs", None)
    if ref_out is not None:
        k = getattr(evaluation, "bundle_samples", None)
        np.savez(staged.path(f"bundle/{tdir}.reference_outputs.npz"), *[o[:k] if k is not None else o for o in ref_out])
        result["bundle"]["reference_outputs"] = f"bundle/{tdir}.reference_outputs.npz"


def _validate(
    recipe: Recipe,
    profile: Any,
    backend: Any,
    artifact: Any,
    fp32_artifact: Any,
    specs: list,
    evaluation: Any,
    calib: Any,
    rep: Reporter,
    name: str,
    measure_latency: bool = True,
) -> dict[str, Any]:
    """Accuracy through the one evaluator, latency against the float model (unless told not to: the
    latency budgets then say "not computed in this run"), then the profile's budgets."""

    metrics: dict[str, Any] = {}
    reference: dict[str, Any] = {}
    samples: dict[str, Any] = {}
    ref_out = None
    if evaluation is not None:
        with rep.step(f"[{name}] evaluating on {evaluation.num_samples} samples"):
            ev = Evaluator(evaluation, recipe.metric)
            ref = ev.reference(backend, fp32_artifact, profile.threads)
            result = ev.evaluate(backend, artifact, profile.threads, ref)
        metrics, reference, samples, ref_out = dict(result.metrics), dict(result.reference), result.samples, ref.outputs
    real = (evaluation or calib).first(max(profile.batch_sizes)) if (evaluation or calib) else None
    latency = None
    if measure_latency:
        latency = time_against_float(
            artifact,
            fp32_artifact,
            specs,
            profile,
            real,
            metrics,
            reference,
            warmup=recipe.bench.warmup,
            iterations=recipe.bench.iterations,
            duration_s=recipe.bench.duration_s,
            reporter=rep,
            label=f"[{name}] ",
        )
    metrics["artifact_mb"] = sum(_mb(f) for f in artifact.path.parent.glob(artifact.path.stem + ".*"))
    verdicts = judge(profile, metrics, reference, latency)
    return {
        "metrics": metrics,
        "reference_metrics": reference,
        "latency": latency,
        "samples": samples,
        "verdicts": [v.as_dict() for v in verdicts],
        "verdict": overall(verdicts, recipe.inconclusive),
        "_reference_outputs": ref_out,
    }
