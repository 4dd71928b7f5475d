"""Commands that search: tune, optimize, search."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgesmith.cli.app import app
from edgesmith.cli.common import (
    EXIT_BUDGET_FAILED,
    CalibSamplesOpt,
    DataOpt,
    DeviceOpt,
    DryOpt,
    EvalOpt,
    EvalSamplesOpt,
    FieldOpt,
    ForceOpt,
    InconclusiveOpt,
    InputOpt,
    MaxLengthOpt,
    OutOpt,
    OutputNameOpt,
    PreprocessOpt,
    RichReporter,
    TokenizerOpt,
    TrainTimeOpt,
    TrustOpt,
    TrustRemoteOpt,
    WeightsOpt,
    build_recipe,
    check_policy,
    data_options,
    default_data,
    err,
    guarded,
    trust_remote,
    warn_inconclusive,
)
from edgesmith.errors import ConfigError
from edgesmith.schema import MAX_ITERATIONS, MAX_SEED, MAX_THREADS
from edgesmith.terminal import say
from edgesmith.units import parse_duration

CacheOpt = Annotated[
    Path | None,
    typer.Option("--cache", help="Pass-result cache folder (the export and the torch passes come from it when they ran before; shareable with searches)."),
]


@app.command()
@guarded
def tune(
    recipe_path: Annotated[
        Path, typer.Argument(metavar="RECIPE", help="Recipe YAML: model, data, one onnxruntime target, optionally torch passes and a ptq_int8 pass.")
    ],
    out: OutOpt = None,
    time_budget: Annotated[
        str, typer.Option("--time-budget", help="How long the search may take, with a unit: 90s, 5m, 1h (the final run comes after).")
    ] = "5m",
    force: ForceOpt = False,
    trust_checkpoint: TrustOpt = False,
    cache: CacheOpt = None,
) -> None:
    """Search quantization settings (calibration method, per-channel, layers kept in float ranked by
    sensitivity) until the target's accuracy budget holds; always writes the best configuration found,
    with every candidate's numbers (tune.md, tune.json, tuned.yaml) and its full run. Exit 1, with the
    gap, when no setting meets the budget.

    Example: edgesmith tune recipe.yaml --time-budget 3m --out out/tuned
    """
    from edgesmith.recipe import load_recipe
    from edgesmith.report import print_verdicts
    from edgesmith.tune import tune as run_tune

    recipe = load_recipe(recipe_path)
    result = run_tune(
        recipe,
        recipe_path.parent.absolute(),
        out_dir=out,
        time_budget_s=parse_duration(time_budget, "--time-budget"),
        reporter=RichReporter(),
        force=force,
        trust_checkpoint=trust_checkpoint,
        cache_dir=cache,
    )
    say((result.out_dir / "tune.md").read_text())
    import json

    print_verdicts(json.loads((result.out_dir / "manifest.json").read_text()), str(result.out_dir))
    warn_inconclusive(result.verdict)
    if result.verdict == "fail":
        gap = "; ".join(result.best.gaps) if result.best and not result.best.feasible else "the final run failed a latency/size budget"
        err(f"no setting met the budget (best written to {result.out_dir}): {gap}")
        raise typer.Exit(EXIT_BUDGET_FAILED)


@app.command()
@guarded
def optimize(
    model: Annotated[
        str | None, typer.Argument(help="A Transformers folder, package.module:factory, model.pt2, model.ts or model.onnx (or give --recipe).")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="Target profile name or .yaml file (default: x86-avx512-vnni-ort, or the recipe's).")
    ] = None,
    recipe_path: Annotated[
        Path | None, typer.Option("--recipe", "-r", help="Take model, data, metric and target from a recipe (its passes run first, in torch).")
    ] = None,
    weights: WeightsOpt = None,
    input_shape: InputOpt = None,
    output_name: OutputNameOpt = None,
    data: DataOpt = None,
    eval_data: EvalOpt = None,
    calibration_samples: CalibSamplesOpt = None,
    eval_samples: EvalSamplesOpt = None,
    preprocess: PreprocessOpt = None,
    field: FieldOpt = None,
    tokenizer: TokenizerOpt = None,
    max_length: MaxLengthOpt = None,
    metric: Annotated[str | None, typer.Option("--metric", help="top1, fidelity, or package.module:function (default: top1 if the data has labels).")] = None,
    budget: Annotated[
        list[str] | None,
        typer.Option("--budget", help="Override an accuracy budget, METRIC=VALUE: top1=1.0 (max points lost), cosine=0.995 (min); repeatable."),
    ] = None,
    same_runtime: Annotated[
        bool,
        typer.Option(
            "--same-runtime", help="Only the target's runtime (default: also other runtimes of the same device, e.g. OpenVINO next to ONNX Runtime on a CPU)."
        ),
    ] = False,
    time_budget: Annotated[
        str, typer.Option("--time-budget", help="How long the search may take, with a unit: 90s, 5m, 1h (the final run comes after).")
    ] = "5m",
    train_budget: Annotated[
        int | None,
        typer.Option(
            "--train-budget",
            min=1,
            help="Recovery epochs per trial: pruning, binarization and 4-bit QAT join the search (a PyTorch model; labels optional).",
        ),
    ] = None,
    train_time: TrainTimeOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("edgesmith-out/optimize"),
    trust_checkpoint: TrustOpt = False,
    trust_remote_code: TrustRemoteOpt = False,
    force: ForceOpt = False,
    cache: CacheOpt = None,
    inconclusive: InconclusiveOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Pick, verify and explain the best compression of a model for a target: recognises the model's
    structure (transformer blocks, depthwise convolutions, PReLU, integer inputs, several outputs),
    tries the settings that structure calls for on the target's runtime (and on other runtimes of the
    same device), measures fidelity and latency there, and keeps the fastest within the accuracy
    budget — or the float model, saying why, when no INT8 setting pays. Writes optimize.md (every
    candidate, its numbers, why it won or lost), optimize.json, optimized.yaml and the winner's full run.

    Examples:

        edgesmith optimize edgesmith.zoo:trained_digits_resnet

        edgesmith optimize edgesmith.zoo:trained_digits_encoder --target x86-avx512-vnni-ov --same-runtime

        edgesmith optimize model.onnx -d calib.npz --eval-data val.npz --budget top1=1.0

        edgesmith optimize edgesmith.zoo:trained_digits_resnet --train-budget 8   (pruning, binarization, QAT join)

        edgesmith optimize mypkg.models:net -d unlabelled.npz --train-time 20m   (recovered from the original model, no labels)

        edgesmith optimize ./my-bert-folder -d sentences.txt        (a Transformers folder and a text file, nothing else)

        edgesmith optimize classifier.onnx -d photos/ --preprocess imagenet   (300 photos calibrate, the rest evaluate)

        edgesmith optimize edgesmith.zoo:trained_digits_resnet -t pi.yaml --device pi   (timed on the device over SSH)
    """
    trust_remote(trust_remote_code)
    from edgesmith.model_io import model_defaults
    from edgesmith.optimize import optimize as run_optimize
    from edgesmith.profiles import budget_overrides, load_profile
    from edgesmith.recipe import load_recipe

    if (model is None) == (recipe_path is None):
        raise ConfigError("give a MODEL or --recipe (one of them)", hint="e.g. edgesmith optimize edgesmith.zoo:trained_digits_resnet")
    if recipe_path is not None:
        from edgesmith.recipe import TargetSpec

        recipe = load_recipe(recipe_path)
        base = recipe_path.parent.absolute()
        if target:
            recipe = recipe.model_copy(update={"targets": [TargetSpec(profile=target)]})
    else:
        assert model is not None  # one of the two, checked above
        defaults = model_defaults(model)
        recipe = build_recipe(
            model,
            weights=weights,
            inputs=input_shape,
            data=default_data(model, data, defaults) if not eval_data else data,
            eval_data=eval_data,
            outputs=output_name,
            metric=metric or defaults.get("metric", "auto"),
            targets=[target or "x86-avx512-vnni-ort"],
            out=out,
            name="optimize",
            data_options=data_options(calibration_samples, eval_samples, preprocess, field, tokenizer, max_length),
        )
        if not (data or eval_data) and defaults.get("data"):
            from edgesmith.recipe import DataSpec

            recipe = recipe.model_copy(update={"data": DataSpec.model_validate(defaults["data"])})
        base = Path.cwd()
    if budget:
        recipe = recipe.model_copy(
            update={"targets": [recipe.targets[0].model_copy(update={"budgets": budget_overrides(budget, load_profile(recipe.targets[0].profile, base))})]}
        )
    if inconclusive is not None:
        recipe = recipe.model_copy(update={"inconclusive": check_policy(inconclusive)})
    result = run_optimize(
        recipe,
        base,
        out_dir=out,
        time_budget_s=parse_duration(time_budget, "--time-budget"),
        other_runtimes=not same_runtime,
        reporter=RichReporter(),
        force=force,
        trust_checkpoint=trust_checkpoint,
        train_budget=train_budget,
        cache_dir=cache,
        train_minutes=parse_duration(train_time, "--train-time") / 60 if train_time else None,
        device=device,
    )
    say((result.out_dir / "optimize.md").read_text())
    say(f"winner: {result.winner.plan.name}; outputs in {result.out_dir}")
    warn_inconclusive(result.verdict)
    if result.verdict == "fail":
        err(f"the winner's full run failed a budget of the target (see {result.out_dir / 'report.md'})")
        raise typer.Exit(EXIT_BUDGET_FAILED)


@app.command()
@guarded
def search(
    recipe_path: Annotated[
        Path, typer.Argument(metavar="RECIPE", help="Recipe YAML whose passes mark choices with {search: [...]} or {search: {low, high, step}}.")
    ],
    target: Annotated[str | None, typer.Option("--target", "-t", help="Target profile name or .yaml (default: the recipe's only target).")] = None,
    trials: Annotated[
        int | None,
        typer.Option(
            "--trials",
            "-n",
            min=1,
            max=MAX_ITERATIONS,
            help="Trials in the study, counting those of an earlier run of the same search (default: the whole grid, or 20).",
        ),
    ] = None,
    time_budget: Annotated[str | None, typer.Option("--time-budget", help="With a unit (90s, 5m, 1h); no new wave of trials starts after it.")] = None,
    sampler: Annotated[
        str, typer.Option("--sampler", help="auto (the grid when it fits in --trials, else TPE), grid, random, tpe or nsga2 (Optuna's).")
    ] = "auto",
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-j", min=1, max=MAX_THREADS, help="Builds side by side, each pinned to its share of the cores (default: one per core)."),
    ] = None,
    storage: Annotated[str | None, typer.Option("--storage", help="Study database as a SQLAlchemy URL (default: sqlite:///OUT/study.db).")] = None,
    cache: Annotated[Path | None, typer.Option("--cache", help="Pass-result cache folder, shareable between searches (default: OUT/cache).")] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="HOST:PORT",
            help="Run trials on this Ray cluster (its head's address); timing on the node labelled edgesmith.hardware=<the target's tag>.",
        ),
    ] = None,
    stop_when_met: Annotated[bool, typer.Option("--stop-when-met", help="Stop after the first wave in which a trial meets every budget.")] = False,
    seed: Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Sampler seed.")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Search folder (study, trials, front, best run); the same folder resumes.")] = Path(
        "edgesmith-out/search"
    ),
    trust_checkpoint: TrustOpt = False,
    trust_remote_code: TrustRemoteOpt = False,
    dry_run: DryOpt = False,
    force: ForceOpt = False,
    inconclusive: InconclusiveOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Find the Pareto front of accuracy, latency and size over the choices a recipe marks, measured on
    the target; run the best trial in full. Trials are kept in an Optuna study (SQLite in the search
    folder): run the same command again to resume an interrupted search — finished trials are kept,
    cut-off ones run again under their own numbers. Pass results are cached by content, so trials that
    share a prefix (the same pruned model, the same calibration) do not recompute it. Builds run side by
    side; latency is timed only when no build runs. Exit 1 when no trial meets every budget (the
    closest are reported).

    Recipe example (passes:):

    \b
      - type: prune_channels
        ratio: {search: [0.3, 0.5, 0.7]}
        recover: {epochs: 8}
      - type: ptq_int8
        enabled: {search: [true, false]}
        calibration: {search: [minmax, entropy]}

    Examples:

        edgesmith search recipe.yaml --trials 12 --out out/search

        edgesmith search recipe.yaml --sampler nsga2 --trials 40 --time-budget 30m --workers 2

        edgesmith search recipe.yaml --ray 10.0.0.5:6379 --storage sqlite:////shared/study.db --cache /shared/cache

        edgesmith search recipe.yaml -t pi.yaml --device pi   (trials timed on the device over SSH)
    """
    from edgesmith.schema import load_yaml
    from edgesmith.search import Settings
    from edgesmith.search import search as run_search

    trust_remote(trust_remote_code)
    if not recipe_path.is_file():
        raise ConfigError(f"recipe not found: {recipe_path}", hint="give the path of a recipe .yaml file")
    data = load_yaml(recipe_path, "recipe")
    if inconclusive is not None and isinstance(data, dict):
        data["inconclusive"] = check_policy(inconclusive)
    settings = Settings(
        trials=trials,
        time_budget_s=parse_duration(time_budget, "--time-budget") if time_budget else None,
        sampler=sampler,
        workers=workers,
        storage=storage,
        cache_dir=cache,
        ray_address=ray,
        stop_when_met=stop_when_met,
        seed=seed,
        force=force,
        trust_checkpoint=trust_checkpoint,
        dry_run=dry_run,
        device=device,
    )
    result = run_search(data, recipe_path.parent.absolute(), out, target=target, settings=settings, reporter=RichReporter())
    if result.verdict == "dry-run":
        say("plan (dry run, nothing executed):")
        for i, step in enumerate(result.info["plan"], 1):
            say(f"  {i}. {step}")
        return
    say((result.out_dir / "search.md").read_text())
    if result.verdict == "interrupted":
        err(f"interrupted ({result.info['interrupted']}): finished trials are kept in the study; run the same command again to resume ({result.out_dir})")
        raise typer.Exit(143 if result.info["interrupted"] == "SIGTERM" else 130)
    if result.verdict == "fail":
        err(f"no trial met every budget of the target; the closest are listed in {result.out_dir / 'search.md'}")
        raise typer.Exit(EXIT_BUDGET_FAILED)
    if result.best_run is not None and result.best_run.verdict == "fail":
        err(f"the best trial's full run failed a budget (see {result.out_dir / 'best' / 'report.md'})")
        raise typer.Exit(EXIT_BUDGET_FAILED)
    if result.best_run is not None:
        warn_inconclusive(result.best_run.verdict)
    if result.best is not None:
        say(f"best: trial #{result.best.number} ({result.best.label}); full run in {result.out_dir / 'best'}")
