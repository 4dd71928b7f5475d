"""The recipe resolved once: what the model is, which passes run at which stage with their typed options,
which targets (profiles with the recipe's overrides) and where the run writes. Every later stage of a run
reads this ``Plan`` instead of re-deriving it from the raw recipe; ``--dry-run`` checks it and prints it.

``resolve`` refuses what a run would refuse before any work (pass order, precisions a target forbids, a
runtime not installed); ``preflight`` adds what needs the disk (files, importable factories, data sources,
input shapes, labels for the metric, the output folder), still without loading a model or decoding data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.compress import get_pass
from edgesmith.compress.registry import check_order
from edgesmith.data.records import open_source
from edgesmith.data.run_data import require_calibration, require_labels
from edgesmith.errors import ConfigError, InputError
from edgesmith.model_io import check_specs_against_onnx, import_object, model_kind, onnx_input_specs, resolve
from edgesmith.outputs import check_output_dir
from edgesmith.profiles import load_profile
from edgesmith.profiles.schema import BUILTIN_METRICS
from edgesmith.recipe import InputSpec, Recipe
from edgesmith.runtime import get_backend

__all__ = ["Plan", "check_model", "check_pass_order", "needs_data", "preflight", "resolve_inputs", "resolve_plan"]


@dataclass
class Plan:
    recipe: Recipe
    base_dir: Path
    out: Path
    kind: str  # onnx | torch | pt2 | torchscript | hf
    profiles: dict[str, Any]  # target name -> Profile (with the recipe's overrides)
    passes: list[tuple[Any, Any, Any]] = field(default_factory=list)  # (PassSpec, PassInfo, typed options)

    @property
    def torch_passes(self) -> list[tuple[Any, Any]]:
        return [(info, cfg) for _, info, cfg in self.passes if info.stage == "torch"]

    @property
    def onnx_passes(self) -> list[tuple[Any, Any, Any]]:
        return [p for p in self.passes if p[1].stage == "onnx"]

    @property
    def reads_calibration(self) -> bool:
        return any(needs_data(info, cfg) for _, info, cfg in self.passes)

    def steps(self) -> list[str]:
        """What a run would do, in order (``--dry-run`` prints it)."""
        r = self.recipe
        steps = [f"load {self.kind} model {r.model.source}" + (f" with weights {r.model.weights}" if r.model.weights else "")]
        if r.optimize:
            return steps + [
                f"[{t.profile}] optimize: read the model's structure, try the candidates its policy picks, measure "
                "fidelity and latency on the target, keep the best (or FP32), full run of the winner"
                for t in r.targets
            ]
        for role in ("calibration", "evaluation"):
            src = getattr(r.data, role)
            if src is not None and (role == "evaluation" or self.reads_calibration):
                steps.append(f"read {role} data {src.source}" + (f" ({src.samples} samples)" if src.samples else ""))
        if self.kind != "onnx":
            steps.append(f"export the float model to ONNX (opset {r.export.opset}, {r.export.exporter}) + parity check")
        steps += [f"torch pass {p.type} {p.options or ''}".rstrip() for p, info, _ in self.passes if info.stage == "torch"]
        if self.torch_passes:
            steps.append("export the model after torch passes + parity check")
        for name, prof in self.profiles.items():
            steps += [f"[{name}] onnx pass {p.type} {p.options or ''}".rstrip() for p, _, _ in self.onnx_passes]
            steps += [f"[{name}] compile for {prof.backend}", f"[{name}] validate against the profile's budgets ({len(prof.budgets)})"]
        return steps


def resolve_plan(recipe: Recipe, base_dir: Path, out: Path) -> Plan:
    """The recipe checked and resolved: the model's kind, the passes in a legal order with their options
    validated, every target's profile loaded and its runtime present."""

    kind = model_kind(recipe.model.source, base_dir)
    if kind == "onnx" and recipe.stop_after == "export":
        raise ConfigError(
            f"{recipe.model.source} is already ONNX: there is nothing to export",
            hint="export takes a PyTorch model (package.module:factory or .pt2); compile an ONNX model with `edgesmith compile`",
        )
    check_pass_order(recipe, kind)
    passes = [(p, get_pass(p.type), p.config()) for p in recipe.passes]
    profiles = {t.profile: load_profile(t.profile, base_dir).with_overrides(t.budgets, t.threads, t.batch_sizes) for t in recipe.targets}
    for name, prof in profiles.items():
        _check_budget_metrics(recipe, name, prof)
        for p, info, _ in passes:
            if info.precision and info.precision not in prof.precisions:
                raise ConfigError(
                    f"pass {p.type!r} produces {info.precision}, which target {name!r} does not allow (allowed: {', '.join(prof.precisions)})",
                    hint="drop the pass or choose a target profile that lists that precision",
                )
        get_backend(prof.backend)  # a runtime that is not installed fails here, before any work
    return Plan(recipe, base_dir, out, kind, profiles, passes)


def _check_budget_metrics(recipe: Recipe, name: str, profile: Any) -> None:
    """A budget names a metric the run computes: a built-in one, or (with a metric function) one it may return."""
    if ":" in recipe.metric:
        return  # NOTE: a function's names are known once it ran; the judge fails a budget it did not return
    unknown = [g.metric for g in profile.budgets if g.metric not in BUILTIN_METRICS]
    if unknown:
        raise ConfigError(
            f"target {name!r} has a budget on {unknown[0]!r}, which no metric of this run computes (built-in: {', '.join(BUILTIN_METRICS)})",
            hint="fix the metric's name in the profile, or give `metric: package.module:function` (--metric) that returns it",
        )


def check_pass_order(recipe: Recipe, kind: str) -> None:
    """Stages in order (torch before ONNX), torch passes only on torch models, and every pass's declared
    requirements met (``compress.registry.check_order``)."""
    seen_onnx = None
    for p in recipe.passes:
        stage = get_pass(p.type).stage
        if stage == "torch" and kind == "onnx":
            raise ConfigError(
                f"pass {p.type!r} works on torch models, but the model is an ONNX file",
                hint="start from the PyTorch model (package.module:factory or .pt2), or drop that pass",
            )
        if stage == "torch" and seen_onnx:
            raise ConfigError(f"torch pass {p.type!r} comes after ONNX pass {seen_onnx!r}", hint="list torch-level passes before ONNX-level ones")
        if stage == "onnx":
            seen_onnx = p.type
    check_order([p.type for p in recipe.passes])


def needs_data(info: Any, cfg: Any) -> bool:
    """Whether a pass, as configured, reads the calibration data: always (``needs_calibration``), when it
    trains through a ``recover:`` block, or when its config says so (``uses_data``, e.g. Taylor importance)."""
    return bool(info.needs_calibration or getattr(cfg, "recover", None) is not None or getattr(cfg, "uses_data", False))


def resolve_inputs(recipe: Recipe, loaded: Any) -> list[InputSpec]:

    if recipe.inputs:
        specs = list(recipe.inputs)
        if loaded.kind == "onnx":
            check_specs_against_onnx(specs, loaded.default_inputs)
        return specs
    if loaded.default_inputs:
        return [InputSpec.model_validate(s) for s in loaded.default_inputs]
    raise ConfigError(NO_INPUTS, hint=NO_INPUTS_HINT)


NO_INPUTS = "the recipe does not say the model's inputs"
NO_INPUTS_HINT = "add `inputs: [{name: input, shape: [batch, 3, 224, 224]}]` or --input-shape"


def preflight(plan: Plan, force: bool = False) -> None:
    """What ``--dry-run`` checks without running anything: every file the recipe names exists, every
    factory and function it names imports, a torch model's inputs are known, the data sources open (listed,
    not decoded) and carry labels where the metric needs them, and the output folder may be written."""

    recipe, base_dir = plan.recipe, plan.base_dir
    m = recipe.model
    factory = check_model(m.source, base_dir, plan.kind)
    for ref, what in ((m.weights, "weights"), (m.reference, "reference model")):
        if ref and not resolve(ref, base_dir).is_file():
            raise InputError(f"{what} not found: {resolve(ref, base_dir)}", hint="fix the path (relative paths are read from the recipe's folder)")
    if plan.kind == "torch" and not recipe.inputs and not getattr(factory, "input_spec", None):
        raise ConfigError(NO_INPUTS, hint=NO_INPUTS_HINT)
    if plan.kind == "onnx" and recipe.inputs:
        check_specs_against_onnx(list(recipe.inputs), onnx_input_specs(resolve(m.source, base_dir)))
    _check_data(plan)
    if recipe.metric not in ("top1", "fidelity", "auto"):
        import_object(recipe.metric, "metric function", base_dir)
    check_output_dir(plan.out, force)


def check_model(source: str, base_dir: Path, kind: str | None = None) -> Any:
    """The model a recipe or command names is there, without loading it: a file exists (an ONNX file's graph
    also parses), a folder exists, a factory imports and is callable (returned). Errors name the path."""
    kind = kind or model_kind(source, base_dir)
    path = resolve(source, base_dir)
    if kind in ("onnx", "pt2", "torchscript") and not path.is_file():
        raise InputError(f"{'ONNX model' if kind == 'onnx' else 'model'} not found: {path}", hint="check the path")
    if kind == "onnx":
        onnx_input_specs(path)  # a truncated or foreign file is refused here, naming the file
    if kind == "hf" and not path.is_dir():
        raise InputError(f"model folder not found: {path}", hint="give the folder written by save_pretrained")
    if kind != "torch":
        return None
    factory = import_object(source, "model factory", base_dir)
    if not callable(factory):
        raise ConfigError(f"model factory {source!r} is not callable", hint="point at a function or class that returns an nn.Module")
    return factory


def _check_data(plan: Plan) -> None:
    """Each data source the run would read opens (files listed, tables' schemas read, nothing decoded);
    the evaluation data has labels when the metric is top1; a pass that calibrates has calibration data."""
    recipe, base_dir = plan.recipe, plan.base_dir
    require_calibration(plan.reads_calibration, recipe.data.calibration is not None)
    for role in ("calibration", "evaluation"):
        src = getattr(recipe.data, role)
        if src is None or (role == "calibration" and not plan.reads_calibration):
            continue
        labelled: bool | None = None
        if src.source.endswith(".npz"):
            path = resolve(src.source, base_dir)
            if not path.is_file():
                raise InputError(f"data file not found: {path}", hint="fix the path (relative paths are read from the recipe's folder)")

            with np.load(path, allow_pickle=False) as z:
                labelled = "labels" in z.files
        elif ":" in src.source:
            import_object(src.source, "data function", base_dir)
        elif src.source in ("digits", "digits32"):
            labelled = True
        else:
            labelled = open_source(src.source, base_dir, field=src.field, label_field=src.label_field, split=src.split, role=role).has_labels
        if role == "evaluation":
            require_labels(recipe.metric, src.source, labelled)
