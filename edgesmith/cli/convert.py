"""Commands that run the pipeline: run, quantize, export, compile, validate, demo."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from edgesmith.cli.app import app
from edgesmith.cli.common import (
    EXIT_BUDGET_FAILED,
    CalibSamplesOpt,
    DataOpt,
    DryOpt,
    EvalOpt,
    EvalSamplesOpt,
    FieldOpt,
    ForceOpt,
    InconclusiveOpt,
    InputOpt,
    MaxLengthOpt,
    MetricOpt,
    MlflowOpt,
    OnOpt,
    OutOpt,
    OutputNameOpt,
    PreprocessOpt,
    ResumeOpt,
    RichReporter,
    SaveOpt,
    TargetOpt,
    TokenizerOpt,
    TrainTimeOpt,
    TrustOpt,
    TrustRemoteOpt,
    WeightsOpt,
    build_recipe,
    data_options,
    default_data,
    execute,
    guarded,
    say_transfer,
    trust_remote,
)
from edgesmith.errors import ConfigError
from edgesmith.terminal import say


class Calibration(str, Enum):
    minmax = "minmax"
    percentile = "percentile"
    entropy = "entropy"


class Mode(str, Enum):
    auto = "auto"
    static = "static"
    dynamic = "dynamic"
    fp16 = "fp16"


@app.command()
@guarded
def run(
    recipe_path: Annotated[Path, typer.Argument(metavar="RECIPE", help="Recipe YAML file.")],
    out: OutOpt = None,
    trust_checkpoint: TrustOpt = False,
    save_recipe: SaveOpt = None,
    dry_run: DryOpt = False,
    force: ForceOpt = False,
    mlflow: MlflowOpt = None,
    trust_remote_code: TrustRemoteOpt = False,
    resume: ResumeOpt = False,
    train_time: TrainTimeOpt = None,
    inconclusive: InconclusiveOpt = None,
) -> None:
    """Run a recipe: model -> passes -> export -> compile -> validate -> report.

    Example recipe:

        name: digits-int8
        model: {source: edgesmith.zoo:pretrained_digits_cnn}
        inputs: [{name: input, shape: [batch, 1, 8, 8]}]
        data:
          calibration: {source: digits, split: train, samples: 256}
          evaluation: {source: digits, split: test}
        metric: top1
        passes:
          - {type: ptq_int8, calibration: entropy}
        targets: [x86-avx512-vnni-ort]
        output_dir: out/digits-int8

    Example: edgesmith run recipe.yaml --out out/ --dry-run
    Example: edgesmith run prune.yaml --train-time 20m     (then, after Ctrl-C or a kill: the same with --resume)
    """
    from edgesmith.recipe import load_recipe

    trust_remote(trust_remote_code)
    recipe = load_recipe(recipe_path)
    execute(
        recipe, recipe_path.parent.absolute(), save_recipe=save_recipe, dry_run=dry_run, force=force, trust=trust_checkpoint, out=out, mlflow=mlflow,
        resume=resume, train_time=train_time, inconclusive=inconclusive,
    )  # fmt: skip


@app.command()
@guarded
def quantize(
    model: Annotated[str, typer.Argument(help="A Transformers folder, package.module:factory, model.pt2, model.ts or model.onnx")],
    weights: WeightsOpt = None,
    input_shape: InputOpt = None,
    output_name: OutputNameOpt = None,
    mode: Annotated[
        Mode,
        typer.Option(
            help="auto (INT8 chosen from the model's structure for the target's runtime, with the reason in the "
            "report; static when --calibration/--per-channel/--exclude are given), static (calibrated QDQ "
            "INT8), dynamic (INT8 weights) or fp16."
        ),
    ] = Mode.auto,
    calibration: Annotated[Calibration | None, typer.Option(help="Calibration method for static INT8 (default: minmax).")] = None,
    samples: Annotated[int | None, typer.Option(min=1, help="Calibration samples (default: all of --data).")] = None,
    per_channel: Annotated[bool | None, typer.Option("--per-channel/--per-tensor", help="Default: the target profile's choice.")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Node name to keep in float; repeatable.")] = None,
    data: DataOpt = None,
    eval_data: EvalOpt = None,
    calibration_samples: CalibSamplesOpt = None,
    eval_samples: EvalSamplesOpt = None,
    preprocess: PreprocessOpt = None,
    field: FieldOpt = None,
    tokenizer: TokenizerOpt = None,
    max_length: MaxLengthOpt = None,
    metric: MetricOpt = "auto",
    target: TargetOpt = None,
    out: OutOpt = Path("edgesmith-out/quantize"),
    trust_checkpoint: TrustOpt = False,
    trust_remote_code: TrustRemoteOpt = False,
    save_recipe: SaveOpt = None,
    dry_run: DryOpt = False,
    force: ForceOpt = False,
    inconclusive: InconclusiveOpt = None,
) -> None:
    """Quantize a model for a target and validate it against the target's budgets.

    Examples:

        edgesmith quantize edgesmith.zoo:pretrained_digits_cnn --calibration entropy

        edgesmith quantize mypkg.models:net -w net.safetensors -i input:batch,3,224,224 -d calib.npz -t x86-avx512-vnni-ort

        edgesmith quantize ./my-bert-folder -d reviews.jsonl --field text          (a Transformers folder; text tokenized with its tokenizer)

        edgesmith quantize model.onnx -d photos/ --preprocess imagenet --calibration-samples 200   (the rest of photos/ evaluates)
    """
    from edgesmith.api import pass_for_mode

    trust_remote(trust_remote_code)
    the_pass = pass_for_mode(mode.value, calibration=calibration.value if calibration else None, samples=samples, per_channel=per_channel, exclude=exclude)
    from edgesmith.model_io import model_defaults

    defaults = model_defaults(model) if not (data or eval_data) else {}
    recipe = build_recipe(
        model,
        weights=weights,
        inputs=input_shape,
        data=default_data(model, data, defaults) if not eval_data else data,
        eval_data=eval_data,
        metric=metric,
        outputs=output_name,
        passes=[the_pass],
        targets=target,
        out=out,
        name="quantize",
        data_options=data_options(calibration_samples, eval_samples, preprocess, field, tokenizer, max_length),
    )
    if defaults.get("data"):
        from edgesmith.recipe import DataSpec

        recipe = recipe.model_copy(update={"data": DataSpec.model_validate(defaults["data"])})
    execute(recipe, Path.cwd(), save_recipe=save_recipe, dry_run=dry_run, force=force, trust=trust_checkpoint, inconclusive=inconclusive)


@app.command()
@guarded
def export(
    model: Annotated[str, typer.Argument(help="A Transformers folder, package.module:factory, model.pt2 or a TorchScript archive (.ts)")],
    weights: WeightsOpt = None,
    input_shape: InputOpt = None,
    output_name: OutputNameOpt = None,
    opset: Annotated[int, typer.Option(min=13, max=23, help="ONNX opset.")] = 18,
    data: DataOpt = None,
    preprocess: PreprocessOpt = None,
    field: FieldOpt = None,
    tokenizer: TokenizerOpt = None,
    max_length: MaxLengthOpt = None,
    out: OutOpt = Path("edgesmith-out/export"),
    trust_checkpoint: TrustOpt = False,
    trust_remote_code: TrustRemoteOpt = False,
    save_recipe: SaveOpt = None,
    dry_run: DryOpt = False,
    force: ForceOpt = False,
) -> None:
    """Export to ONNX (dynamic batch), check it, and check ONNX Runtime against torch.

    Examples:

        edgesmith export edgesmith.zoo:resnet18 -o out/resnet18

        edgesmith export ./my-bert-folder -o out/bert        (inputs and outputs named from the tokenizer and the model)

        edgesmith export model.ts -i input:batch,3,224,224   (a TorchScript archive)
    """
    trust_remote(trust_remote_code)
    recipe = build_recipe(
        model,
        weights=weights,
        inputs=input_shape,
        outputs=output_name,
        data=data,
        out=out,
        stop_after="export",
        name="export",
        data_options=data_options(None, None, preprocess, field, tokenizer, max_length),
    )
    recipe = recipe.model_copy(update={"export": recipe.export.model_copy(update={"opset": opset})})
    execute(recipe, Path.cwd(), save_recipe=save_recipe, dry_run=dry_run, force=force, trust=trust_checkpoint)


@app.command(name="compile")
@guarded
def compile_(
    model: Annotated[str, typer.Argument(help="model.onnx (or any model source)")],
    target: TargetOpt = None,
    input_shape: InputOpt = None,
    out: OutOpt = Path("edgesmith-out/compile"),
    save_recipe: SaveOpt = None,
    dry_run: DryOpt = False,
    force: ForceOpt = False,
) -> None:
    """Compile a model for each target's runtime (no validation).

    Example: edgesmith compile out/model.int8.onnx -t x86-avx512-vnni-ort
    """
    recipe = build_recipe(model, inputs=input_shape, targets=target, out=out, stop_after="compile", name="compile")
    recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"calibration": None, "evaluation": None})})
    execute(recipe, Path.cwd(), save_recipe=save_recipe, dry_run=dry_run, force=force)


@app.command()
@guarded
def validate(
    model: Annotated[str, typer.Argument(help="model.onnx to validate (any model source works), or a run directory (device bundle)")],
    target: TargetOpt = None,
    input_shape: InputOpt = None,
    reference: Annotated[str | None, typer.Option("--reference", help="Float ONNX model to compare against (accuracy drop, fidelity, speed-up).")] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            help="Evaluation data: an image folder, a .txt/.jsonl/.csv/.parquet/.arrow file, "
            "a saved datasets folder, FILE.npz, package.module:function or digits (default: a zoo model's own data).",
        ),
    ] = None,
    eval_samples: EvalSamplesOpt = None,
    preprocess: PreprocessOpt = None,
    field: FieldOpt = None,
    tokenizer: TokenizerOpt = None,
    max_length: MaxLengthOpt = None,
    metric: MetricOpt = "auto",
    out: OutOpt = Path("edgesmith-out/validate"),
    save_recipe: SaveOpt = None,
    dry_run: DryOpt = False,
    force: ForceOpt = False,
    json_out: Annotated[bool, typer.Option("--json", help="Device bundle validation: print JSON results.")] = False,
    inconclusive: InconclusiveOpt = None,
    on: OnOpt = None,
) -> None:
    """Validate a model against target profiles: accuracy, latency, size, memory.

    Without --reference the model is its own reference (absolute budgets only say something then).

    Given a run directory, re-validates its artifacts here, without torch: on a device, after
    `pip install 'edgesmith[ort]'` (or [openvino]), `edgesmith validate RUN_DIR [-t TARGET]`.

    From this machine, `edgesmith validate RUN_DIR --on DEVICE` does the same on a device over SSH (see
    `edgesmith device add`) and records the device's results in the run's manifest (and devices/DEVICE.md).

    Example: edgesmith validate out/x86-avx512-vnni-ort/model.int8.onnx --reference out/model.onnx -t x86-avx512-vnni-ort -d eval.npz
    """
    if Path(model).is_dir():
        return _validate_bundle(Path(model), target, json_out, on)
    if on is not None:
        raise ConfigError(
            "--on validates a run directory on a device",
            hint="build the run here first (edgesmith run / quantize), then: edgesmith validate RUN_DIR --on DEVICE",
        )
    from edgesmith.model_io import model_defaults

    defaults = model_defaults(model) if not data else {}
    recipe = build_recipe(
        model,
        inputs=input_shape,
        eval_data=default_data(model, data, defaults),
        metric=metric,
        targets=target,
        out=out,
        name="validate",
        data_options=data_options(None, eval_samples, preprocess, field, tokenizer, max_length),
    )
    if defaults.get("data"):  # a zoo model's own evaluation data
        from edgesmith.recipe import DataSpec

        recipe = recipe.model_copy(update={"data": DataSpec.model_validate(defaults["data"])})
    recipe = recipe.model_copy(
        update={"data": recipe.data.model_copy(update={"calibration": None}), "model": recipe.model.model_copy(update={"reference": reference})}
    )
    if reference:  # re-validate so the reference field's own checks apply
        from edgesmith.recipe import parse_recipe

        recipe = parse_recipe(recipe.model_dump(mode="json") | {"passes": []}, "flags")
    execute(recipe, Path.cwd(), save_recipe=save_recipe, dry_run=dry_run, force=force, inconclusive=inconclusive)


def _validate_bundle(run_dir: Path, targets: list[str] | None, json_out: bool, on: str | None = None) -> None:
    import json

    from edgesmith.device import validate_bundle
    from edgesmith.report import print_verdicts

    if targets and len(targets) > 1:
        raise ConfigError("validate a run directory for one target at a time, or all", hint="give at most one --target")
    if on is not None:
        from edgesmith.remote import client

        result, transfer = client.validate(on, run_dir, targets[0] if targets else None, RichReporter())
        say_transfer(on, transfer)
        written = client.record(run_dir, result)
        say(f"device {on}'s results recorded in {run_dir / 'manifest.json'} and {written}", err=True)
    else:
        result = validate_bundle(run_dir, targets[0] if targets else None, RichReporter())
    if json_out:
        print(json.dumps(result, indent=2, default=str))
    else:
        print_verdicts(result, f"{run_dir} on device {on}" if on else str(run_dir))
    if result["verdict"] == "fail":
        raise typer.Exit(EXIT_BUDGET_FAILED)


@app.command()
@guarded
def demo(
    out: OutOpt = None,
) -> None:
    """Run the built-in demo: the bundled digits CNN -> INT8 -> x86 AVX-512 VNNI profile.

    Example: edgesmith demo --out /tmp/demo
    """
    from edgesmith.recipe import load_recipe

    recipe_path = Path(__file__).resolve().parents[1] / "recipes" / "demo.yaml"
    recipe = load_recipe(recipe_path)
    say("edgesmith demo: digits CNN (trained on scikit-learn's handwritten digits) -> static INT8 -> x86-avx512-vnni-ort", err=True)
    execute(recipe, Path.cwd(), save_recipe=None, dry_run=False, out=out or Path(recipe.output_dir))
