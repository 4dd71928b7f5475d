"""Building: run, quantize, optimize, export, compile, validate (``edgesmith.api`` re-exports them)."""

from __future__ import annotations

import inspect
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith import pipeline
from edgesmith.api.arguments import checked
from edgesmith.device import validate_bundle
from edgesmith.errors import ConfigError, InputError
from edgesmith.evaluate.judge import busy_machine, combine
from edgesmith.hf import TRUST_ENV, wrap_model
from edgesmith.memory import register
from edgesmith.model_io import model_defaults
from edgesmith.optimize import optimize as run_optimize
from edgesmith.recipe import Recipe, load_recipe, parse_recipe
from edgesmith.remote import client
from edgesmith.units import parse_duration

MODES = {"auto": "auto_int8", "static": "ptq_int8", "dynamic": "dynamic_int8", "fp16": "fp16"}


@dataclass
class Result:
    """What a run gives back: verdict, where things are, and the first target's numbers."""

    verdict: str  # pass | fail | exported | compiled | dry-run
    out_dir: Path | None
    manifest: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    reference_metrics: dict[str, Any] = field(default_factory=dict)
    speedup: float | None = None  # over FP32 on the target, first batch size; None when timed on a busy machine
    artifacts: list[Path] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, run: Any) -> Result:
        targets = run.manifest.get("targets") or {}
        first: dict[str, Any] = next(iter(targets.values()), {})
        metrics = dict(first.get("metrics") or {})

        key = next((k for k in metrics if k.partition("@")[0] == "speedup_vs_fp32"), None)
        speed = metrics[key] if key and not busy_machine(first.get("latency"), int(key.split("@")[1])) else None
        arts = [run.out_dir / a["path"] for t in targets.values() for a in t.get("artifacts", [])] if run.out_dir else []
        return cls(run.verdict, run.out_dir, run.manifest, metrics, dict(first.get("reference_metrics") or {}), speed, arts, list(run.plan))


@checked
def pass_for_mode(
    mode: str, *, calibration: str | None = None, samples: int | None = None, per_channel: bool | None = None, exclude: list[str] | None = None
) -> dict[str, Any]:
    """The pass a quantize mode means with its options: ``auto`` (the default) INT8 chosen from the model's
    structure for the target's runtime, as optimize would try first — or static INT8 when static-only
    settings are given —, ``static`` (calibrated QDQ), ``dynamic`` (INT8 weights) or ``fp16``."""
    if mode not in MODES:
        raise ConfigError(f"unknown quantize mode {mode!r}", hint=f"modes: {', '.join(MODES)}")
    if mode == "auto":
        if calibration is None and per_channel is None and not exclude:
            return {"type": MODES["auto"], **({"samples": samples} if samples else {})}
        mode = "static"  # NOTE: calibration/granularity/exclusions are static-INT8 settings: the user asked for that
    options: dict[str, Any] = {}
    if mode == "static":
        options = {"calibration": calibration or "minmax", **({"samples": samples} if samples else {})}
    if mode in ("static", "dynamic") and per_channel is not None:
        options["per_channel"] = per_channel
    if exclude:
        options["exclude_nodes"] = list(exclude)
    return {"type": MODES[mode], **options}


def to_recipe(recipe: Any) -> tuple[Any, Path]:

    if isinstance(recipe, Recipe):
        return recipe, Path.cwd()
    if isinstance(recipe, dict):
        return parse_recipe(recipe, "recipe"), Path.cwd()
    path = Path(recipe)
    return load_recipe(path), path.parent.absolute()


def _on_devices(rec: Recipe, done: Any, reporter: Any) -> Any:
    """Targets that name a device are validated there (over SSH) and judged by what the device measured:
    its results go into the run (manifest ``devices``, ``devices/NAME.md``) and its verdict is the target's."""

    if done.out_dir is None:
        return done
    verdicts = {name: t["verdict"] for name, t in done.manifest["targets"].items()}
    for name, spec in zip(list(verdicts), rec.targets):
        if spec.device:
            measured, _ = client.validate(spec.device, done.out_dir, name, reporter)
            client.record(done.out_dir, measured)
            verdicts[name] = measured["targets"][name]["verdict"]
    manifest = json.loads((done.out_dir / "manifest.json").read_text())
    return pipeline.RunResult(done.out_dir, manifest, combine(list(verdicts.values())))


@checked
def run(
    recipe: Any,
    *,
    out_dir: str | Path | None = None,
    base_dir: str | Path | None = None,
    trust_checkpoint: bool = False,
    dry_run: bool = False,
    reporter: Any = None,
    force: bool = False,
    resume: bool = False,
) -> Result:
    """Run a recipe (Recipe, dict or YAML path) — ``edgesmith run``; ``resume``: continue an interrupted run's training."""

    rec, base = to_recipe(recipe)
    base = Path(base_dir) if base_dir else base
    out = Path(out_dir) if out_dir else None
    if not (rec.optimize and not dry_run):
        done = pipeline.run(rec, base, out_dir=out, trust_checkpoint=trust_checkpoint, dry_run=dry_run, reporter=reporter, force=force, resume=resume)
        if not dry_run and any(t.device for t in rec.targets) and done.manifest.get("targets"):
            done = _on_devices(rec, done, reporter)
        return Result.of(done)
    # `passes: auto`: optimize per target, each into its own folder (one target: the output folder itself)
    target_out = out or (base / rec.output_dir if not Path(rec.output_dir).is_absolute() else Path(rec.output_dir))
    results = []
    for t in rec.targets:
        one = rec.model_copy(update={"targets": [t], "optimize": False})
        dest = target_out if len(rec.targets) == 1 else target_out / Path(t.profile).stem
        results.append(run_optimize(one, base, out_dir=dest, reporter=reporter, force=force, trust_checkpoint=trust_checkpoint))
    if len(results) == 1:
        return Result.of(pipeline.RunResult(target_out, json.loads((target_out / "manifest.json").read_text()), results[0].verdict))
    verdict = combine([r.verdict for r in results])
    return Result(verdict, target_out, {"optimize": {str(r.out_dir): r.winner.plan.name for r in results}, "targets": {}})


def _model_source(model: Any, inputs: list[dict] | None, example_inputs: Any) -> tuple[dict, list[dict] | None]:
    """A recipe ``model:`` block and input specs for an in-memory module, a factory string or a path."""
    if isinstance(model, (str, Path)):
        return {"source": str(model)}, inputs
    if not hasattr(model, "forward"):
        raise ConfigError(
            f"model must be an nn.Module, a factory string or an .onnx/.pt2 path, got {type(model).__name__}",
            hint="pass the module itself, e.g. edgesmith.quantize(net, example_inputs=torch.randn(1, 3, 224, 224))",
        )
    if inputs is None:
        if example_inputs is None:
            raise ConfigError("an in-memory model needs example_inputs or inputs", hint="e.g. example_inputs=torch.randn(1, 3, 224, 224)")
        inputs = _specs_from_examples(example_inputs, model)
    module = _transformers_object(model, inputs) if hasattr(model, "config") and hasattr(model, "main_input_name") else model.eval()
    return {"source": register(lambda: module, "model")}, inputs


def _transformers_object(model: Any, inputs: list[dict]) -> Any:
    """A transformers model object: called with keyword inputs, outputs named from its ModelOutput (as a folder is)."""

    names = [s["name"] for s in inputs]
    shape = tuple(inputs[0]["shape"][1:]) if names == ["pixel_values"] else (3, 224, 224)
    return wrap_model(model.eval(), names, image_shape=shape)


def forward_names(module: Any, n: int) -> list[str]:
    """The first ``n`` positional parameter names of ``module.forward`` (input, input_1, ... where it has none)."""

    names: list[str] = []
    try:
        params = inspect.signature(module.forward).parameters.values()
        names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        pass
    if len(names) < n:
        return ["input"] if n == 1 else [f"input_{i}" for i in range(n)]
    return names[:n]


def _specs_from_examples(example: Any, module: Any = None) -> list[dict]:

    if isinstance(example, dict):
        items = list(example.items())
    else:
        xs = list(example) if isinstance(example, (tuple, list)) else [example]
        items = list(zip(forward_names(module, len(xs)), xs))  # NOTE: named as the model names its arguments
    specs = []
    for name, x in items:
        arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        dims: list[Any] = ["batch", *[int(d) for d in arr.shape[1:]]]
        if arr.dtype.kind in "iu" and arr.ndim == 2 and hasattr(module, "main_input_name"):
            dims[1] = "sequence"  # NOTE: token inputs of a transformers model: any length
        specs.append({"name": name, "shape": dims, "dtype": "int64" if arr.dtype.kind in "iu" and hasattr(module, "main_input_name") else str(arr.dtype)})
    return specs


def _data_source(data: Any, role: str, batch_size: int = 32) -> str | None:
    """A recipe data source for arrays, (x, labels), a dict of arrays, a DataLoader or an iterable of batches."""
    if data is None or isinstance(data, str):
        return data
    if isinstance(data, Path):
        return str(data)
    if hasattr(data, "column_names") and hasattr(data, "save_to_disk"):
        return _hf_dataset_path(data)

    def batches(x: Any, labels: Any) -> list:
        n = _samples(next(iter(x.values()), None) if isinstance(x, dict) else x, f"{role} inputs")
        m = n if labels is None else _samples(labels, f"{role} labels")
        if m != n:
            raise InputError(f"the {role} data has {n} input sample(s) but {m} label(s)", hint="give one label per sample (the first dimension)")
        out = []
        for i in range(0, n, batch_size):
            part = {k: v[i : i + batch_size] for k, v in x.items()} if isinstance(x, dict) else x[i : i + batch_size]
            out.append(part if labels is None else (part, labels[i : i + batch_size]))
        return out

    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], (tuple, list)):
        items: Iterable[Any] = batches(data[0], np.asarray(data[1]) if not hasattr(data[1], "detach") else data[1])
    elif isinstance(data, dict) or hasattr(data, "shape"):
        items = batches(data, None)
    elif isinstance(data, Iterable):
        items = data  # a DataLoader or a list of batches: iterated as it is
    else:
        raise ConfigError(f"cannot use {type(data).__name__} as data", hint="give arrays, (x, labels), {name: array}, a DataLoader or a path")
    return register(items, "data")


def _samples(v: Any, what: str) -> int:
    """How many samples an array holds (its first dimension); a scalar or an empty array is refused."""
    shape = getattr(v, "shape", None)
    if v is None or (shape is not None and len(shape) == 0) or not hasattr(v, "__len__"):
        raise InputError(f"the {what} are a single value, not a batch of samples", hint="give arrays whose first dimension counts the samples")
    if len(v) == 0:
        raise InputError(f"the {what} hold no samples (first dimension 0)", hint="give at least one sample")
    return len(v)


def _hf_dataset_path(ds: Any) -> str:
    """A Hugging Face ``datasets.Dataset``: its own arrow file when it is backed by one, else saved once to a
    temporary folder; either way read lazily like any table (text tokenized, images decoded, columns by name)."""

    files = [f["filename"] for f in getattr(ds, "cache_files", None) or []]
    if len(files) == 1 and getattr(ds, "_indices", None) is None:  # NOTE: a select()/filter() view is saved, not read whole
        return files[0]
    folder = tempfile.mkdtemp(prefix="edgesmith-dataset-")
    ds.save_to_disk(folder)
    return folder


def _build(
    model: Any,
    *,
    inputs: list[dict] | None,
    example_inputs: Any,
    calibration: Any,
    evaluation: Any,
    metric: str | None,
    passes: list[dict],
    target: str | list[str],
    out_dir: Any,
    name: str,
    stop_after: str = "validate",
    outputs: list[str] | None = None,
) -> Any:

    model_block, specs = _model_source(model, inputs, example_inputs)
    calib_src, eval_src = _data_source(calibration, "calibration"), _data_source(evaluation, "evaluation")
    data: dict[str, Any] = {}
    if calib_src or eval_src:
        data = {"calibration": {"source": calib_src or eval_src}, "evaluation": {"source": eval_src or calib_src}}
    elif stop_after not in ("export", "compile"):  # as on the command line: no toy data set stands in for the user's
        own = model_defaults(str(model)) if isinstance(model, (str, Path)) else {}  # a zoo model brings its own
        data = own.get("data") or {}
        if not data:
            raise ConfigError(
                f"{name}: the model needs data to calibrate and evaluate with, and none was given",
                hint=f"pass {'data=' if name == 'validate' else 'calibration= / evaluation='} (arrays, (x, labels), a DataLoader, a path; "
                "'digits' takes the bundled 8x8 digits)",
            )
    recipe: dict[str, Any] = {
        "name": name,
        "model": model_block,
        "passes": passes,
        "stop_after": stop_after,
        "targets": [target] if isinstance(target, str) else list(target),
        "metric": metric or "auto",
    }
    if data:
        recipe["data"] = data
    if specs:
        recipe["inputs"] = specs
    if outputs:
        recipe["outputs"] = list(outputs)
    if out_dir is not None:
        recipe["output_dir"] = str(out_dir)
    return parse_recipe(recipe, "arguments")


@checked
def quantize(
    model: Any,
    *,
    example_inputs: Any = None,
    inputs: list[dict] | None = None,
    calibration: Any = None,
    evaluation: Any = None,
    metric: str | None = None,
    mode: str = "auto",
    target: str | list[str] = "x86-avx512-vnni-ort",
    out_dir: str | Path = "edgesmith-out/quantize",
    calibration_method: str | None = None,
    per_channel: bool | None = None,
    exclude: list[str] | None = None,
    reporter: Any = None,
) -> Result:
    """Quantize for a target and validate against its budgets — ``edgesmith quantize``."""
    recipe = _build(
        model,
        inputs=inputs,
        example_inputs=example_inputs,
        calibration=calibration,
        evaluation=evaluation,
        metric=metric,
        passes=[pass_for_mode(mode, calibration=calibration_method, per_channel=per_channel, exclude=exclude)],
        target=target,
        out_dir=out_dir,
        name="quantize",
    )
    return run(recipe, out_dir=out_dir, reporter=reporter)


@checked
def optimize(
    model: Any,
    *,
    example_inputs: Any = None,
    inputs: list[dict] | None = None,
    calibration: Any = None,
    evaluation: Any = None,
    metric: str | None = None,
    target: str = "x86-avx512-vnni-ort",
    out_dir: str | Path = "edgesmith-out/optimize",
    time_budget_s: float = 300.0,
    same_runtime: bool = False,
    reporter: Any = None,
    train_budget: int | str | None = None,
    time_budget: str | float | None = None,
    cache_dir: str | Path | None = None,
    device: str | None = None,
) -> Any:
    """Pick, verify and explain the best compression for a target — ``edgesmith optimize``: an ``OptimizeResult``
    (``.winner.plan.name``, ``.winner.speedup``, ``.trials``, ``.out_dir``). ``time_budget``: ``"90s"``, ``"5m"`` (a
    number: seconds), over ``time_budget_s``; ``train_budget``: epochs, or wall time as ``"20m"`` (``--train-time``).
    ``cache_dir``: the pass cache (``--cache``): the export and torch passes come from it when they ran before.
    ``device``: time the candidates on that device over SSH and validate the winner there (``--device``)."""
    if time_budget is not None:
        time_budget_s = parse_duration(time_budget, "time_budget", bare_seconds=True)
    else:
        time_budget_s = parse_duration(time_budget_s, "time_budget_s", bare_seconds=True)  # NaN, 0 and negatives refused

    recipe = _build(
        model, inputs=inputs, example_inputs=example_inputs, calibration=calibration, evaluation=evaluation or calibration,
        metric=metric, passes=[], target=target, out_dir=out_dir, name="optimize",
    )  # fmt: skip
    return run_optimize(
        recipe,
        Path.cwd(),
        out_dir=Path(out_dir),
        time_budget_s=time_budget_s,
        other_runtimes=not same_runtime,
        reporter=reporter,
        train_budget=int(train_budget) if train_budget is not None and not isinstance(train_budget, str) else None,
        cache_dir=Path(cache_dir) if cache_dir else None,
        train_minutes=parse_duration(train_budget, "train_budget") / 60 if isinstance(train_budget, str) else None,
        device=device,
    )


# ---------------------------------------------------------------- the other commands


@checked
def export(
    model: Any,
    *,
    example_inputs: Any = None,
    inputs: list[dict] | None = None,
    outputs: list[str] | None = None,
    data: Any = None,
    opset: int = 18,
    out_dir: str | Path = "edgesmith-out/export",
    trust_remote_code: bool = False,
    reporter: Any = None,
    force: bool = False,
) -> Result:
    """Export to ONNX with a dynamic batch, check it, and check ONNX Runtime against torch — ``edgesmith export``.
    ``model``: an nn.Module or transformers model (with ``example_inputs``), a Transformers folder, a factory
    string, a .pt2 or TorchScript file. ``outputs`` names the outputs (default: the model's own)."""
    _trust(trust_remote_code)
    recipe = _build(
        model,
        inputs=inputs,
        example_inputs=example_inputs,
        calibration=data,
        evaluation=data,
        metric=None,
        passes=[],
        target="x86-avx512-vnni-ort",
        out_dir=out_dir,
        name="export",
        stop_after="export",
        outputs=outputs,
    )
    if data is None:
        recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"calibration": None, "evaluation": None})})
    recipe = recipe.model_copy(update={"export": type(recipe.export).model_validate({**recipe.export.model_dump(), "opset": opset})})
    return run(recipe, out_dir=out_dir, reporter=reporter, force=force)


@checked
def compile(
    model: Any,
    *,
    target: str | list[str] = "x86-avx512-vnni-ort",
    inputs: list[dict] | None = None,  # noqa: A001 - the command's name
    out_dir: str | Path = "edgesmith-out/compile",
    reporter: Any = None,
    force: bool = False,
) -> Result:
    """Compile a model for each target's runtime, without validation — ``edgesmith compile``."""
    recipe = _build(
        model,
        inputs=inputs,
        example_inputs=None,
        calibration=None,
        evaluation=None,
        metric=None,
        passes=[],
        target=target,
        out_dir=out_dir,
        name="compile",
        stop_after="compile",
    )
    recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"calibration": None, "evaluation": None})})
    return run(recipe, out_dir=out_dir, reporter=reporter, force=force)


@checked
def validate(
    model: Any,
    *,
    data: Any,
    reference: str | Path | None = None,
    target: str | list[str] = "x86-avx512-vnni-ort",
    inputs: list[dict] | None = None,
    metric: str | None = None,
    out_dir: str | Path = "edgesmith-out/validate",
    reporter: Any = None,
    force: bool = False,
    on: str | None = None,
) -> Result:
    """Validate a model (against its float ``reference``) on ``data`` for the targets' budgets — ``edgesmith validate``.
    A run folder as ``model`` re-validates its device bundle here (``data`` is then ignored) and returns its results;
    ``on``: on that device over SSH, the results recorded in the run (``--on``)."""

    if isinstance(model, (str, Path)) and Path(model).is_dir() and (Path(model) / "manifest.json").is_file():
        one = target if isinstance(target, str) else None
        if on is not None:
            res, _ = client.validate(on, Path(model), one, reporter)
            client.record(Path(model), res)
        else:
            res = validate_bundle(Path(model), one, reporter)
        return Result(res["verdict"], Path(model), res)
    if on is not None:
        raise ConfigError("on= validates a run folder on a device", hint="build the run first (edgesmith.run / quantize), then validate(RUN_DIR, on=DEVICE)")
    recipe = _build(
        model, inputs=inputs, example_inputs=None, calibration=None, evaluation=data, metric=metric, passes=[], target=target, out_dir=out_dir, name="validate"
    )
    recipe = parse_recipe(
        recipe.model_dump(mode="json")
        | {
            "passes": [],
            "model": {**recipe.model.model_dump(mode="json"), "reference": str(reference) if reference else None},
            "data": {"calibration": None, "evaluation": recipe.data.evaluation.model_dump(mode="json") if recipe.data.evaluation else None},
        },
        "arguments",
    )
    return run(recipe, out_dir=out_dir, reporter=reporter, force=force)


def _trust(flag: bool) -> None:
    if flag:
        os.environ[TRUST_ENV] = "1"
