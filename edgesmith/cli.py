"""edgesmith command line: parse flags, build a Recipe, call the pipeline, map errors to exit codes.

No business logic lives here. torch, onnxruntime and openvino are not imported by ``--help``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Optional

import typer

from edgesmith.errors import EXIT_BUDGET_FAILED, EXIT_INTERNAL, ConfigError, EdgesmithError

app = typer.Typer(
    name="edgesmith",
    help="Compress trained PyTorch models, export to ONNX, compile per target and validate against target profiles.\n\n"
    "Exit codes: 0 all budgets pass, 1 a budget fails, 2 bad usage or input, 3 internal error.\n\n"
    "Examples:\n\n"
    "  edgesmith demo\n\n"
    "  edgesmith run recipe.yaml\n\n"
    "  edgesmith quantize edgesmith.zoo:resnet18 --target x86-avx512-vnni-ort --data calib.npz\n\n"
    "  edgesmith bench model.onnx --threads 2 --batch 1\n\n"
    "  edgesmith baseline save out/main --to baseline.json && edgesmith check out/pr --baseline baseline.json",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
)
profiles_app = typer.Typer(help="List and show target profiles.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")
baseline_app = typer.Typer(help="Store a run as the baseline `edgesmith check` gates later runs against.", no_args_is_help=True)
app.add_typer(baseline_app, name="baseline")
zoo_app = typer.Typer(help="Train and cache the zoo's reference models (digits CNN, ResNet- and MobileNetV2-style).", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")


def _err(text: str) -> None:
    print(f"edgesmith: error: {text}", file=sys.stderr)


def guarded(fn: Callable) -> Callable:
    """One error policy: domain errors -> one line + hint + exit code; the rest -> exit 3."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except EdgesmithError as exc:
            if os.environ.get("EDGESMITH_DEBUG"):
                raise
            _err(exc.one_line())
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            _err("interrupted; nothing was written to the output directory")
            raise typer.Exit(130) from None
        except Exception as exc:
            if os.environ.get("EDGESMITH_DEBUG"):
                raise
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            _err(f"internal error: {type(exc).__name__}: {first} (set EDGESMITH_DEBUG=1 for the traceback)")
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper


class RichReporter:
    """Spinner while a step runs, a tick with its duration when it ends (on stderr)."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[None]:
        t0 = time.perf_counter()
        from rich.markup import escape

        with self.console.status(f"{escape(text)} ..."):
            yield
        self.console.print(f"[green]✓[/] {escape(text)} [dim]({time.perf_counter() - t0:.1f}s)[/]")

    def info(self, text: str) -> None:
        from rich.markup import escape

        self.console.print(f"  {escape(text)}")


# ---- shared options -------------------------------------------------------------------------

class Calibration(str, Enum):
    minmax = "minmax"
    percentile = "percentile"
    entropy = "entropy"


class Mode(str, Enum):
    static = "static"
    dynamic = "dynamic"
    fp16 = "fp16"


OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Output directory (default: the recipe's output_dir).")]
TargetOpt = Annotated[Optional[list[str]], typer.Option("--target", "-t", help="Target profile name or .yaml file; repeatable.")]
WeightsOpt = Annotated[Optional[str], typer.Option("--weights", "-w", help="safetensors or state-dict checkpoint for a factory model.")]
InputOpt = Annotated[Optional[list[str]], typer.Option("--input-shape", "-i", help="NAME:DIMS[:DTYPE], e.g. input:batch,1,8,8 or ids:batch,128:int64; repeatable.")]
DataOpt = Annotated[Optional[str], typer.Option("--data", "-d", help="Calibration data: digits, FILE.npz or package.module:function.")]
EvalOpt = Annotated[Optional[str], typer.Option("--eval-data", help="Evaluation data (default: same source as --data, held-out split for digits).")]
MetricOpt = Annotated[str, typer.Option("--metric", help="top1, fidelity, or package.module:function.")]
TrustOpt = Annotated[bool, typer.Option("--trust-checkpoint", help="Allow full unpickling of a checkpoint (runs code from the file!).")]
SaveOpt = Annotated[Optional[Path], typer.Option("--save-recipe", help="Write the recipe these flags build to this YAML file.")]
DryOpt = Annotated[bool, typer.Option("--dry-run", help="Validate everything and print the plan; run nothing.")]
MlflowOpt = Annotated[Optional[str], typer.Option("--mlflow", metavar="URI", help="Also log to MLflow, e.g. file:./mlruns (needs the mlflow extra).")]


def _parse_input(text: str) -> dict:
    from edgesmith.errors import ConfigError

    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ConfigError(f"--input-shape {text!r} is not NAME:DIMS[:DTYPE]", hint="e.g. --input-shape input:batch,3,224,224")
    dims = [int(d) if d.strip().isdigit() else d.strip() for d in parts[1].replace("x", ",").split(",")]
    spec = {"name": parts[0], "shape": dims}
    if len(parts) == 3:
        spec["dtype"] = parts[2]
    return spec


def build_recipe(model: str, *, weights: Optional[str] = None, inputs: Optional[list[str]] = None,
                 data: Optional[str] = None, eval_data: Optional[str] = None, metric: str = "top1",
                 passes: Optional[list[dict]] = None, targets: Optional[list[str]] = None,
                 out: Optional[Path] = None, stop_after: str = "validate", trust: bool = False,
                 name: str = "cli") -> Any:
    """The same Recipe object a YAML file gives, built from flags."""
    from edgesmith.recipe import parse_recipe

    recipe: dict[str, Any] = {"name": name, "model": {"source": model, "trust_checkpoint": trust}, "metric": metric,
                              "passes": passes or [], "stop_after": stop_after}
    if weights:
        recipe["model"]["weights"] = weights
    if inputs:
        recipe["inputs"] = [_parse_input(i) for i in inputs]
    if data or eval_data:
        calib_src = data or eval_data
        recipe["data"] = {"calibration": {"source": calib_src}, "evaluation": {"source": eval_data or calib_src}}
    if targets:
        recipe["targets"] = targets
    if out:
        recipe["output_dir"] = str(out)
    return parse_recipe(recipe, "flags")


def _execute(recipe: Any, base_dir: Path, *, save_recipe: Optional[Path], dry_run: bool, trust: bool = False,
             out: Optional[Path] = None, quiet: bool = False, mlflow: Optional[str] = None) -> None:
    from edgesmith import pipeline
    from edgesmith.report import print_verdicts

    if save_recipe:
        from edgesmith.outputs import atomic_write_text, check_writable

        check_writable(save_recipe.parent)
        atomic_write_text(save_recipe, recipe.to_yaml())
        print(f"recipe written to {save_recipe}", file=sys.stderr)
    result = pipeline.run(recipe, base_dir, out_dir=out, trust_checkpoint=trust, dry_run=dry_run, reporter=RichReporter())
    if result.dry_run:
        print("plan (dry run, nothing executed):")
        for i, step in enumerate(result.plan, 1):
            print(f"  {i}. {step}")
        return
    if result.manifest.get("targets") and recipe.stop_after == "validate":
        print_verdicts(result.manifest, str(result.out_dir))
    else:
        print(f"done: {result.verdict}; outputs in {result.out_dir}")
    if mlflow:
        from edgesmith.tracking import log_to_mlflow

        run_id = log_to_mlflow(mlflow, result.manifest, [result.out_dir / "manifest.json", result.out_dir / "report.md"])
        print(f"logged to MLflow {mlflow} (run {run_id})", file=sys.stderr)
    if result.verdict == "fail":
        raise typer.Exit(EXIT_BUDGET_FAILED)


# ---- commands -------------------------------------------------------------------------------

@app.command()
@guarded
def run(
    recipe_path: Annotated[Path, typer.Argument(metavar="RECIPE", help="Recipe YAML file.")],
    out: OutOpt = None,
    trust_checkpoint: TrustOpt = False,
    save_recipe: SaveOpt = None,
    dry_run: DryOpt = False,
    mlflow: MlflowOpt = None,
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
    """
    from edgesmith.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    _execute(recipe, recipe_path.parent.absolute(), save_recipe=save_recipe, dry_run=dry_run, trust=trust_checkpoint, out=out,
             mlflow=mlflow)


@app.command()
@guarded
def quantize(
    model: Annotated[str, typer.Argument(help="package.module:factory, model.pt2 or model.onnx")],
    weights: WeightsOpt = None,
    input_shape: InputOpt = None,
    mode: Annotated[Mode, typer.Option(help="static (calibrated QDQ INT8), dynamic (INT8 weights) or fp16.")] = Mode.static,
    calibration: Annotated[Calibration, typer.Option(help="Calibration method for static INT8.")] = Calibration.minmax,
    samples: Annotated[Optional[int], typer.Option(min=1, help="Calibration samples (default: all of --data).")] = None,
    per_channel: Annotated[Optional[bool], typer.Option("--per-channel/--per-tensor", help="Default: the target profile's choice.")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option("--exclude", help="Node name to keep in float; repeatable.")] = None,
    data: DataOpt = "digits",
    eval_data: EvalOpt = None,
    metric: MetricOpt = "top1",
    target: TargetOpt = None,
    out: OutOpt = Path("edgesmith-out/quantize"),
    trust_checkpoint: TrustOpt = False,
    save_recipe: SaveOpt = None,
    dry_run: DryOpt = False,
) -> None:
    """Quantize a model for a target and validate it against the target's budgets.

    Examples:

        edgesmith quantize edgesmith.zoo:pretrained_digits_cnn --calibration entropy

        edgesmith quantize mypkg.models:net -w net.safetensors -i input:batch,3,224,224 -d calib.npz -t x86-avx512-vnni-ort
    """
    options: dict[str, Any] = {}
    if mode == Mode.static:
        options = {"calibration": calibration.value, **({"samples": samples} if samples else {})}
        if per_channel is not None:
            options["per_channel"] = per_channel
    elif mode == Mode.dynamic and per_channel is not None:
        options["per_channel"] = per_channel
    if exclude:
        options["exclude_nodes"] = exclude
    pass_type = {"static": "ptq_int8", "dynamic": "dynamic_int8", "fp16": "fp16"}[mode.value]
    recipe = build_recipe(model, weights=weights, inputs=input_shape, data=data, eval_data=eval_data, metric=metric,
                          passes=[{"type": pass_type, **options}], targets=target, out=out, trust=trust_checkpoint, name="quantize")
    _execute(recipe, Path.cwd(), save_recipe=save_recipe, dry_run=dry_run)


@app.command()
@guarded
def export(
    model: Annotated[str, typer.Argument(help="package.module:factory or model.pt2")],
    weights: WeightsOpt = None,
    input_shape: InputOpt = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 18,
    data: DataOpt = None,
    out: OutOpt = Path("edgesmith-out/export"),
    trust_checkpoint: TrustOpt = False,
    save_recipe: SaveOpt = None,
    dry_run: DryOpt = False,
) -> None:
    """Export to ONNX (dynamic batch), check it, and check ONNX Runtime against torch.

    Example: edgesmith export edgesmith.zoo:resnet18 -o out/resnet18
    """
    recipe = build_recipe(model, weights=weights, inputs=input_shape, data=data, out=out, stop_after="export",
                          trust=trust_checkpoint, name="export")
    recipe = recipe.model_copy(update={"export": recipe.export.model_copy(update={"opset": opset})})
    _execute(recipe, Path.cwd(), save_recipe=save_recipe, dry_run=dry_run)


@app.command(name="compile")
@guarded
def compile_(
    model: Annotated[str, typer.Argument(help="model.onnx (or any model source)")],
    target: TargetOpt = None,
    input_shape: InputOpt = None,
    out: OutOpt = Path("edgesmith-out/compile"),
    save_recipe: SaveOpt = None,
    dry_run: DryOpt = False,
) -> None:
    """Compile a model for each target's runtime (no validation).

    Example: edgesmith compile out/model.int8.onnx -t x86-avx512-vnni-ort
    """
    recipe = build_recipe(model, inputs=input_shape, targets=target, out=out, stop_after="compile", name="compile")
    recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"calibration": None, "evaluation": None})})
    _execute(recipe, Path.cwd(), save_recipe=save_recipe, dry_run=dry_run)


@app.command()
@guarded
def validate(
    model: Annotated[str, typer.Argument(help="model.onnx to validate (any model source works), or a run directory (device bundle)")],
    target: TargetOpt = None,
    input_shape: InputOpt = None,
    reference: Annotated[Optional[str], typer.Option("--reference", "-r", help="Float ONNX model to compare against (accuracy drop, fidelity, speed-up).")] = None,
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="Evaluation data: digits, FILE.npz or package.module:function.")] = "digits",
    metric: MetricOpt = "top1",
    out: OutOpt = Path("edgesmith-out/validate"),
    save_recipe: SaveOpt = None,
    dry_run: DryOpt = False,
    json_out: Annotated[bool, typer.Option("--json", help="Device bundle validation: print JSON results.")] = False,
) -> None:
    """Validate a model against target profiles: accuracy, latency, size, memory.

    Without --reference the model is its own reference (absolute budgets only say something then).

    Given a run directory, re-validates its artifacts here, without torch: on a device, after
    `pip install 'edgesmith[ort]'` (or [openvino]), `edgesmith validate RUN_DIR [-t TARGET]`.

    Example: edgesmith validate out/x86-avx512-vnni-ort/model.int8.onnx -r out/model.onnx -t x86-avx512-vnni-ort -d eval.npz
    """
    if Path(model).is_dir():
        return _validate_bundle(Path(model), target, json_out)
    recipe = build_recipe(model, inputs=input_shape, eval_data=data, metric=metric, targets=target, out=out, name="validate")
    recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"calibration": None}),
                                       "model": recipe.model.model_copy(update={"reference": reference})})
    if reference:  # re-validate so the reference field's own checks apply
        from edgesmith.recipe import parse_recipe

        recipe = parse_recipe(recipe.model_dump(mode="json") | {"passes": []}, "flags")
    _execute(recipe, Path.cwd(), save_recipe=save_recipe, dry_run=dry_run)


def _validate_bundle(run_dir: Path, targets: Optional[list[str]], json_out: bool) -> None:
    import json

    from edgesmith.device import validate_bundle
    from edgesmith.report import print_verdicts

    if targets and len(targets) > 1:
        from edgesmith.errors import ConfigError

        raise ConfigError("validate a run directory for one target at a time, or all", hint="give at most one --target")
    result = validate_bundle(run_dir, targets[0] if targets else None, RichReporter())
    if json_out:
        print(json.dumps(result, indent=2, default=str))
    else:
        print_verdicts(result, str(run_dir))
    if result["verdict"] == "fail":
        raise typer.Exit(EXIT_BUDGET_FAILED)


class BackendChoice(str, Enum):
    auto = "auto"
    onnxruntime = "onnxruntime"
    openvino = "openvino"


@app.command()
@guarded
def bench(
    model: Annotated[Path, typer.Argument(help="Artifact to benchmark: .onnx (ONNX Runtime) or .xml (OpenVINO IR)")],
    backend: Annotated[BackendChoice, typer.Option(help="Runtime; auto picks it from the file type.")] = BackendChoice.auto,
    target: Annotated[Optional[str], typer.Option("--target", "-t", help="Take threads and batch sizes from this profile.")] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="Intra-op threads (default: the profile's, else 2).")] = None,
    batch: Annotated[Optional[list[int]], typer.Option(help="Batch size; repeatable (default: the profile's, else 1).")] = None,
    warmup: Annotated[int, typer.Option(min=0)] = 10,
    iterations: Annotated[int, typer.Option(min=1)] = 100,
    duration: Annotated[Optional[float], typer.Option(help="Seconds to run instead of a fixed count.")] = None,
    input_shape: InputOpt = None,
    optimization: Annotated[str, typer.Option(help="ONNX Runtime graph optimisation when loading: disable, basic, extended, all.")] = "all",
    until_stable: Annotated[bool, typer.Option("--until-stable", help="Repeat until the coefficient of variation is below --cv.")] = False,
    cv: Annotated[float, typer.Option(help="Noise threshold: coefficient of variation above it flags the run.")] = 0.10,
    max_repeats: Annotated[int, typer.Option(min=1, help="Most repeats with --until-stable.")] = 5,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Benchmark a model or compiled artifact: p50/p90/p95/p99, mean, std, throughput, peak memory, noise flag.

    Each measurement runs in a fresh process that imports only the runtime.

    Examples:

        edgesmith bench model.onnx --threads 2 --batch 1 --batch 8

        edgesmith bench out/x86-avx512-vnni-ov/model.openvino.xml --target x86-avx512-vnni-ov --until-stable
    """
    import json

    from edgesmith.runtime.bench import bench_artifact

    rows = bench_artifact(model, backend.value, target=target, threads=threads, batches=batch, warmup=warmup,
                          iterations=iterations, duration_s=duration, input_shapes=[_parse_input(i) for i in input_shape or []],
                          ort_level=optimization, until_stable=until_stable, cv_threshold=cv, max_repeats=max_repeats,
                          reporter=RichReporter())
    if json_out:
        print(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{model.name} on {rows[0]['backend']}, {rows[0]['threads']} threads (latency in ms)")
    cols = {"batch": "batch", "iterations": "runs", "p50_ms": "p50", "p90_ms": "p90", "p95_ms": "p95", "p99_ms": "p99",
            "mean_ms": "mean", "std_ms": "std", "throughput_per_s": "items/s", "peak_rss_mb": "RSS MB"}
    for header in [*cols.values(), "noise"]:
        table.add_column(header)
    for r in rows:
        noise = f"NOISY cv {r['cv']:.0%}" if r["noisy"] else f"ok cv {r['cv']:.0%}"
        if r.get("repeats", 1) > 1:
            noise += f", {r['repeats']} runs"
        table.add_row(*[f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols], noise)
    Console(width=None if sys.stdout.isatty() else 160).print(table)


@app.command()
@guarded
def compare(
    a: Annotated[Path, typer.Argument(help="Artifact A (the baseline): .onnx or .xml")],
    b: Annotated[Path, typer.Argument(help="Artifact B (the candidate): .onnx or .xml")],
    threads: Annotated[int, typer.Option(min=1, help="Intra-op threads for both.")] = 2,
    batch: Annotated[int, typer.Option(min=1)] = 1,
    rounds: Annotated[int, typer.Option(min=2, help="Interleaved rounds (A then B in each).")] = 20,
    per_round: Annotated[int, typer.Option(min=1, help="Timed runs of each artifact per round.")] = 10,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999)] = 0.95,
    input_shape: InputOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Interleaved A/B latency: the ratio B/A of median latencies with a bootstrap confidence interval.

    Both run in one process, alternating in rounds, so a noisy machine slows both alike.

    Example: edgesmith compare out/model.onnx out/x86-avx512-vnni-ort/model.onnxruntime.onnx --batch 1
    """
    import json

    from edgesmith.runtime.bench import artifact_for
    from edgesmith.runtime.compare import compare as run_compare
    from edgesmith.runtime.bench import make_feeds

    art_a, specs = artifact_for(a, [_parse_input(i) for i in input_shape or []])
    art_b, specs_b = artifact_for(b, [_parse_input(i) for i in input_shape or []])
    if [s.name for s in specs] != [s.name for s in specs_b]:
        from edgesmith.errors import InputError

        raise InputError(f"{a.name} and {b.name} have different inputs ({[s.name for s in specs]} vs {[s.name for s in specs_b]})",
                         hint="compare two builds of the same model")
    with RichReporter().step(f"comparing {a.name} (A) and {b.name} (B): {rounds} rounds x {per_round} runs"):
        result = run_compare(art_a, art_b, make_feeds(specs, batch), threads, rounds, per_round, confidence=confidence)
    if json_out:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(f"A {a.name}: p50 {result.a_p50_ms:.4g} ms   B {b.name}: p50 {result.b_p50_ms:.4g} ms")
        print(result.describe())


@app.command()
@guarded
def demo(
    out: OutOpt = None,
) -> None:
    """Run the built-in demo: the bundled digits CNN -> INT8 -> x86 AVX-512 VNNI profile.

    Example: edgesmith demo --out /tmp/demo
    """
    from edgesmith.recipe import load_recipe

    recipe_path = Path(__file__).with_name("recipes") / "demo.yaml"
    recipe = load_recipe(recipe_path)
    print("edgesmith demo: digits CNN (trained on scikit-learn's handwritten digits) -> static INT8 -> x86-avx512-vnni-ort", file=sys.stderr)
    _execute(recipe, Path.cwd(), save_recipe=None, dry_run=False, out=out or Path(recipe.output_dir))


@app.command()
@guarded
def passes() -> None:
    """List the compression passes and their options."""
    import dataclasses

    from edgesmith.compress import known_passes

    for name, info in known_passes().items():
        print(f"{name}  [{info.stage}]  {info.summary}")
        for f in dataclasses.fields(info.config):
            default = f.default if f.default is not dataclasses.MISSING else "required"
            print(f"    {f.name} = {default!r}")


@profiles_app.command("list")
@guarded
def profiles_list() -> None:
    """List built-in target profiles."""
    from edgesmith.profiles import builtin_names, load_profile

    for name in builtin_names():
        p = load_profile(name)
        print(f"{name:24s} {p.backend:12s} {p.hardware.arch:8s} {'(estimated budgets) ' if p.estimated else ''}{p.description.strip()[:80]}")


@profiles_app.command("show")
@guarded
def profiles_show(name: Annotated[str, typer.Argument(help="Built-in profile name or a profile .yaml file.")]) -> None:
    """Show one profile as YAML.  Example: edgesmith profiles show x86-avx512-vnni-ort"""
    import yaml

    from edgesmith.profiles import load_profile

    print(yaml.safe_dump(load_profile(name).model_dump(mode="json"), sort_keys=False), end="")


@profiles_app.command("init")
@guarded
def profiles_init(
    name: Annotated[str, typer.Argument(help="Name of the new profile.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the profile YAML.")] = Path("profile.yaml"),
    backend: Annotated[str, typer.Option(help="onnxruntime or openvino.")] = "onnxruntime",
    threads: Annotated[Optional[int], typer.Option(min=1, help="Threads (default: all cores).")] = None,
    no_benchmark: Annotated[bool, typer.Option("--no-benchmark", help="Skip the short INT8 benchmark.")] = False,
) -> None:
    """Write a profile for this machine: CPU features, cores, and INT8 defaults from a short benchmark.

    Example: edgesmith profiles init my-box -o my-box.yaml && edgesmith quantize MODEL -t my-box.yaml
    """
    import yaml

    from edgesmith.errors import ConfigError
    from edgesmith.outputs import atomic_write_text, check_writable
    from edgesmith.profiles.init import init_profile
    from edgesmith.profiles.schema import Profile

    if backend not in ("onnxruntime", "openvino"):
        raise ConfigError(f"profiles init supports onnxruntime and openvino, not {backend!r}", hint="--backend onnxruntime")
    check_writable(out.parent)
    with RichReporter().step("probing this machine" + ("" if no_benchmark else " (about 10 s of benchmark)")):
        data, notes = init_profile(name, backend, threads, benchmark=not no_benchmark)
    Profile.model_validate(data)  # what we write must load
    atomic_write_text(out, yaml.safe_dump(data, sort_keys=False))
    for n in notes:
        print(f"- {n}")
    print(f"profile {name!r} written to {out}")


@app.command()
@guarded
def tune(
    recipe_path: Annotated[Path, typer.Argument(metavar="RECIPE", help="Recipe YAML: model, data, one onnxruntime target, optionally torch passes and a ptq_int8 pass.")],
    out: OutOpt = None,
    time_budget: Annotated[float, typer.Option("--time-budget", min=0.1, help="Minutes the search may take (the final run comes after).")] = 5.0,
) -> None:
    """Search quantization settings (calibration method, per-channel, layers kept in float ranked by
    sensitivity) until the target's accuracy budget holds; always writes the best configuration found,
    with every candidate's numbers (tune.md, tune.json, tuned.yaml) and its full run. Exit 1, with the
    gap, when no setting meets the budget.

    Example: edgesmith tune recipe.yaml --time-budget 3 --out out/tuned
    """
    from edgesmith.recipe import load_recipe
    from edgesmith.report import print_verdicts
    from edgesmith.tune import tune as run_tune

    recipe = load_recipe(recipe_path)
    result = run_tune(recipe, recipe_path.parent.absolute(), out_dir=out, time_budget_s=time_budget * 60, reporter=RichReporter())
    print((result.out_dir / "tune.md").read_text())
    import json

    print_verdicts(json.loads((result.out_dir / "manifest.json").read_text()), str(result.out_dir))
    if result.verdict == "fail":
        gap = result.best.gap if result.best and not result.best.meets else "the final run failed a latency/size budget"
        _err(f"no setting met the budget (best written to {result.out_dir}): {gap}")
        raise typer.Exit(EXIT_BUDGET_FAILED)


@app.command()
@guarded
def optimize(
    model: Annotated[Optional[str], typer.Argument(help="package.module:factory, model.pt2 or model.onnx (or give --recipe).")] = None,
    target: Annotated[Optional[str], typer.Option("--target", "-t", help="Target profile name or .yaml file (default: x86-avx512-vnni-ort, or the recipe's).")] = None,
    recipe_path: Annotated[Optional[Path], typer.Option("--recipe", "-r", help="Take model, data, metric and target from a recipe (its passes run first, in torch).")] = None,
    weights: WeightsOpt = None,
    input_shape: InputOpt = None,
    data: DataOpt = None,
    eval_data: EvalOpt = None,
    metric: Annotated[Optional[str], typer.Option("--metric", help="top1, fidelity, or package.module:function (default: top1 if the data has labels).")] = None,
    budget: Annotated[Optional[list[str]], typer.Option("--budget", "-b", help="Override an accuracy budget, METRIC=VALUE: top1=1.0 (max points lost), cosine=0.995 (min); repeatable.")] = None,
    same_runtime: Annotated[bool, typer.Option("--same-runtime", help="Only the target's runtime (default: also other runtimes of the same device, e.g. OpenVINO next to ONNX Runtime on a CPU).")] = False,
    time_budget: Annotated[float, typer.Option("--time-budget", min=0.1, help="Minutes the search may take (the final run comes after).")] = 5.0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("edgesmith-out/optimize"),
    trust_checkpoint: TrustOpt = False,
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
    """
    from edgesmith.optimize import optimize as run_optimize
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
        defaults = _model_defaults(model)
        recipe = build_recipe(model, weights=weights, inputs=input_shape, data=data, eval_data=eval_data,
                              metric=metric or defaults.get("metric", "top1"), targets=[target or "x86-avx512-vnni-ort"], out=out,
                              trust=trust_checkpoint, name="optimize")
        if not (data or eval_data) and defaults.get("data"):
            from edgesmith.recipe import DataSpec

            recipe = recipe.model_copy(update={"data": DataSpec.model_validate(defaults["data"])})
        base = Path.cwd()
    if budget:
        recipe = recipe.model_copy(update={"targets": [recipe.targets[0].model_copy(update={"budgets": _budget_overrides(budget, recipe, base)})]})
    result = run_optimize(recipe, base, out_dir=out, time_budget_s=time_budget * 60, other_runtimes=not same_runtime, reporter=RichReporter())
    print((result.out_dir / "optimize.md").read_text())
    print(f"winner: {result.winner.plan.name}; outputs in {result.out_dir}")
    if result.verdict == "fail":
        _err(f"the winner's full run failed a budget of the target (see {result.out_dir / 'report.md'})")
        raise typer.Exit(EXIT_BUDGET_FAILED)


def _model_defaults(model: str) -> dict:
    """Data and metric a zoo factory declares (``factory.defaults``), so its demo needs no flags."""
    if ":" not in model or model.endswith((".onnx", ".pt2")):
        return {}
    from edgesmith.model_io import import_object

    try:
        return dict(getattr(import_object(model, "model factory"), "defaults", {}) or {})
    except Exception:  # noqa: BLE001 - the model is loaded (and its errors reported) later
        return {}


def _budget_overrides(items: list[str], recipe: Any, base: Path) -> list:
    from edgesmith.profiles import load_profile
    from edgesmith.profiles.schema import Goal

    profile = load_profile(recipe.targets[0].profile, base)
    goals = {g.metric: g for g in profile.budgets}
    out = []
    for item in items:
        name, _, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"--budget {item!r} is not METRIC=NUMBER", hint="e.g. --budget top1=1.0 or --budget cosine=0.995") from None
        kind = goals[name].goal if name in goals else ("min" if name in ("cosine", "sqnr_db") else "max-degradation")
        out.append(Goal(metric=name, goal=kind, value=number))
    return out  # replaces the profile's budget for that metric (Profile.with_overrides)


@zoo_app.command("train")
@guarded
def zoo_train(
    names: Annotated[Optional[list[str]], typer.Argument(metavar="[NAME...]", help="digits_resnet, digits_mobilenet, digits_prelu_heads, digits_encoder (default: all).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Train again even if cached.")] = False,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs (default: each model's own).")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Train the zoo's digits models and cache them, so tests, benchmarks and recipes
    (edgesmith.zoo:trained_digits_resnet, ..._mobilenet, ..._prelu_heads, ..._encoder) share them.

    Example: edgesmith zoo train digits_resnet
    """
    from edgesmith.zoo.digits32 import ARCHS, train_cached

    for name in names or list(ARCHS):
        with RichReporter().step(f"{name}: training on the digits (or reading the cache)"):
            path, acc = train_cached(name, seed, force, epochs=epochs)
        print(f"{name}: {'held-out top-1 ' + format(acc * 100, '.2f') + '%, ' if acc is not None else 'cached, '}{path}")


# ---- the CI gate ----------------------------------------------------------------------------

@baseline_app.command("save")
@guarded
def baseline_save(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Output directory of a validated `edgesmith run`.")],
    to: Annotated[Path, typer.Option("--to", help="Baseline file to write (JSON).")] = Path("baseline.json"),
    no_artifacts: Annotated[bool, typer.Option("--no-artifacts", help="Do not copy the compiled artifacts beside the baseline "
                                               "(check then compares against recorded latencies only).")] = False,
) -> None:
    """Record a run as the baseline: per target the accuracy metrics, every latency sample, artifact
    size and hash, peak memory; the recipe and library versions. The compiled artifacts are copied to
    BASELINE.artifacts/ beside it, so `check` can re-time them against a candidate on the same machine.

    Example: edgesmith baseline save edgesmith-out/demo --to baseline.json
    """
    from edgesmith.gate import save_baseline

    data = save_baseline(run_dir, to, copy_artifacts=not no_artifacts)
    n_files = sum(len(t["artifact"]["files"]) for t in data["targets"].values())
    copied = f", {n_files} artifact file(s) copied to {to.parent / (to.stem + '.artifacts')}" if not no_artifacts else ""
    print(f"baseline of {run_dir} ({', '.join(data['targets'])}) written to {to}{copied}")
    if data.get("verdict") == "fail":
        print("note: this run failed its own profile budgets; the baseline records it as it is, and check judges "
              "later runs against it, not against the budgets", file=sys.stderr)


@app.command()
@guarded
def check(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Output directory of the run to gate.")],
    baseline: Annotated[Path, typer.Option("--baseline", "-b", help="Baseline file from `edgesmith baseline save`.")] = Path("baseline.json"),
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write check.json, junit.xml, summary.md, report.html "
                                                "(default: RUN_DIR/check).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Compare even if the baseline comes from another model or recipe.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Count inconclusive latency checks as failures.")] = False,
    no_remeasure: Annotated[bool, typer.Option("--no-remeasure", help="Compare latency with the recorded samples only.")] = False,
    rounds: Annotated[int, typer.Option(min=2, help="Interleaved rounds when re-timing baseline vs candidate.")] = 20,
    per_round: Annotated[int, typer.Option(min=1, help="Timed runs of each per round.")] = 10,
    latency_tolerance: Annotated[Optional[float], typer.Option(min=0.0, help="Allowed slowdown, e.g. 0.1 = 10% (default: the profile's gate).")] = None,
    accuracy_tolerance: Annotated[Optional[float], typer.Option(min=0.0, help="Allowed drop in points (default: the profile's budget).")] = None,
    mlflow: MlflowOpt = None,
) -> None:
    """Gate a run against a baseline: exit 0 when nothing regressed, 1 on a regression, 2 on bad input.

    Accuracy fails when its drop exceeds the profile's tolerance (and says when the difference is within
    sampling noise); latency re-times the baseline artifact and the candidate interleaved here and fails
    only when the whole confidence interval of the ratio lies beyond the tolerance: a noisy machine gives
    "inconclusive", not a failure (unless --strict); size and peak memory fail beyond their tolerances.
    Writes JUnit XML, a Markdown summary (also to $GITHUB_STEP_SUMMARY on GitHub Actions) and an HTML report.

    Example: edgesmith check out/pr --baseline baseline.json --out gate/
    """
    from edgesmith.gate import check_run
    from edgesmith.gate.publish import write_gate_outputs
    from edgesmith.outputs import check_writable

    out_dir = out or run_dir / "check"
    check_writable(out_dir)
    started = time.time()
    report = check_run(run_dir, baseline, force=force, remeasure=not no_remeasure, strict=strict, rounds=rounds, per_round=per_round,
                       latency_tolerance=latency_tolerance, accuracy_tolerance=accuracy_tolerance, reporter=RichReporter())
    manifest = report.manifest
    written = write_gate_outputs(report, report.baseline, manifest, out_dir, time.time() - started)
    _print_gate(report)
    print(f"gate outputs: {', '.join(str(p) for p in written.values())}")
    if mlflow:
        from edgesmith.tracking import log_to_mlflow

        run_id = log_to_mlflow(mlflow, manifest, list(written.values()) + [run_dir / "manifest.json"], gate=report.as_dict())
        print(f"logged to MLflow {mlflow} (run {run_id})", file=sys.stderr)
    if report.verdict == "fail":
        raise typer.Exit(EXIT_BUDGET_FAILED)


def _print_gate(report: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    table = Table(title=escape(f"edgesmith check: {report.headline()}"), title_justify="left")
    for col in ("target", "metric", "baseline", "now", "delta", "budget", "verdict", "detail"):
        table.add_column(col, overflow="fold")
    style = {"fail": "bold red", "missing": "bold red", "inconclusive": "yellow", "pass": "green"}
    fmt = lambda v: "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    for f in report.sorted_findings():
        table.add_row(escape(f.target), escape(f.metric), fmt(f.baseline), fmt(f.now), escape(f.delta), escape(f.budget),
                      f"[{style.get(f.status, 'dim')}]{f.status.upper()}[/]", escape(f.detail))
    console.print(table)
    for c in report.changes:
        console.print(f"changed since the baseline: {escape(c)}")
    if report.forced_over:
        console.print(f"[yellow]forced past: {escape('; '.join(report.forced_over))}[/]")


@app.command()
@guarded
def report(
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN_DIR...", help="One or more run directories (e.g. one per recipe or pass).")],
    html: Annotated[Path, typer.Option("--html", help="HTML file to write.")] = Path("edgesmith-report.html"),
    baseline: Annotated[Optional[Path], typer.Option("--baseline", "-b", help="Also plot this baseline (hollow points).")] = None,
) -> None:
    """Write one self-contained HTML report across runs: accuracy vs latency vs size (Pareto view),
    latency distributions, per-layer sensitivity where a pass recorded it, and every budget.

    Example: edgesmith report out/int8 out/fp16 --html compare.html
    """
    from edgesmith.gate.baseline import load_baseline, load_run
    from edgesmith.outputs import atomic_write_text, check_writable
    from edgesmith.reporting.html import render_html

    check_writable(html.parent)
    runs = [(d.name or str(d), load_run(d)) for d in run_dirs]
    atomic_write_text(html, render_html(runs, baseline=load_baseline(baseline) if baseline else None))
    print(f"report written to {html}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
