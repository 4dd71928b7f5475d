"""What every command shares: the one error policy, the progress display, option aliases, and the
step from flags to a Recipe and from a Recipe to a printed verdict."""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from edgesmith.errors import EXIT_BAD_INPUT, EXIT_BUDGET_FAILED, EXIT_INTERNAL, EdgesmithError, refused_data
from edgesmith.terminal import console, say

__all__ = ["EXIT_BUDGET_FAILED", "DeviceOpt", "OnOpt", "RichReporter", "Terminated", "build_recipe", "err", "execute", "guarded", "on_sigterm", "parse_input"]


def err(text: str) -> None:
    from edgesmith.errors import shown

    say(f"edgesmith: error: {shown(text)}", err=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what CI runners and `timeout` send), raised in the main thread like Ctrl-C so every
    staging folder, work folder and benchmark child is cleaned up on the way out."""


def on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def guarded(fn: Callable) -> Callable:
    """One error policy: domain errors -> one line + hint + exit code; the rest -> exit 3. User code
    (a model factory, a metric, a data function) never decides the exit code: its sys.exit is an error."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except SystemExit as exc:  # NOTE: edgesmith's own exits are typer.Exit; this one came from user code
            err(
                f"user code called sys.exit({exc.code!r}) while edgesmith was running; the command did not finish "
                "(hint: remove the sys.exit from the model factory, metric or data function; it may not end edgesmith)"
            )
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except EdgesmithError as exc:
            if os.environ.get("EDGESMITH_DEBUG"):
                raise
            err(exc.one_line())
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:  # Terminated (SIGTERM) is one
            kept = getattr(exc, "kept", None)
            what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            err(f"{what}; no artifact was written to the output directory" + (f" ({kept})" if kept else ""))
            raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
        except Exception as exc:
            if os.environ.get("EDGESMITH_DEBUG"):
                raise
            refused = refused_data(exc)  # NOTE: a command that ran the user's data outside the pipeline
            if refused is not None:
                err(refused.one_line())
                raise typer.Exit(refused.exit_code) from None
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            err(f"internal error: {type(exc).__name__}: {first} (set EDGESMITH_DEBUG=1 for the traceback)")
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper


class RichReporter:
    """Spinner while a step runs, a tick with its duration when it ends (on stderr)."""

    def __init__(self) -> None:
        self.console = console(stderr=True)

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[None]:
        t0 = time.perf_counter()
        from rich.markup import escape

        from edgesmith.errors import shown

        text = shown(text)
        with self.console.status(f"{escape(text)} ..."):
            yield
        self.console.print(f"[green]✓[/] {escape(text)} [dim]({time.perf_counter() - t0:.1f}s)[/]")

    def info(self, text: str) -> None:
        from rich.markup import escape

        from edgesmith.errors import shown

        self.console.print(f"  {escape(shown(text))}")


# ---- shared options -------------------------------------------------------------------------

OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output directory (default: the recipe's output_dir).")]
TargetOpt = Annotated[list[str] | None, typer.Option("--target", "-t", help="Target profile name or .yaml file; repeatable.")]
WeightsOpt = Annotated[str | None, typer.Option("--weights", "-w", help="safetensors or state-dict checkpoint for a factory model.")]
InputOpt = Annotated[
    list[str] | None, typer.Option("--input-shape", "-i", help="NAME:DIMS[:DTYPE], e.g. input:batch,1,8,8 or ids:batch,128:int64; repeatable.")
]
DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        "-d",
        help="Data: an image folder (flat or one sub-folder per class), a .txt/.jsonl/.csv/"
        ".parquet/.arrow file, a saved datasets folder, FILE.npz, package.module:function, or digits.",
    ),
]
EvalOpt = Annotated[str | None, typer.Option("--eval-data", help="Evaluation data (default: same source as --data, held-out split for digits).")]
CalibSamplesOpt = Annotated[
    int | None,
    typer.Option(
        "--calibration-samples",
        min=1,
        help="Calibration samples. With one folder or file "
        "(no --eval-data) it is split, shuffled with a fixed seed: this many for calibration (default 300, at most half), the rest for evaluation.",
    ),
]
EvalSamplesOpt = Annotated[int | None, typer.Option("--eval-samples", min=1, help="Evaluation samples (default: all that are left).")]
PreprocessOpt = Annotated[
    str | None,
    typer.Option(
        "--preprocess",
        help="Images: a preset (imagenet, inception, clip, caffe, unit); "
        "default: the input's size with ImageNet mean/std for 3 channels. Recipes take a full block.",
    ),
]
FieldOpt = Annotated[str | None, typer.Option("--field", help="Text/table data: the field or column to read (default: text, sentence, image ...).")]
TokenizerOpt = Annotated[str | None, typer.Option("--tokenizer", help="Text data: a tokenizer folder (default: the model's own Transformers folder).")]
MaxLengthOpt = Annotated[int | None, typer.Option("--max-length", min=1, max=65536, help="Text data: tokens per sample (padding/truncation; default 128).")]
TrustRemoteOpt = Annotated[
    bool,
    typer.Option(
        "--trust-remote-code", envvar="EDGESMITH_TRUST_REMOTE_CODE", help="Run code shipped inside a Transformers folder (auto_map). Never read from a recipe."
    ),
]
OutputNameOpt = Annotated[
    list[str] | None, typer.Option("--output-name", help="Name of an exported output, in order; repeatable (default: the module's own names).")
]
MetricOpt = Annotated[str, typer.Option("--metric", help="auto (top1 when the data has labels, else fidelity), top1, fidelity, or package.module:function.")]
TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust-checkpoint",
        envvar="EDGESMITH_TRUST_CHECKPOINT",
        help="Allow full unpickling of a checkpoint (runs code from the file!). Never read from a recipe.",
    ),
]
SaveOpt = Annotated[Path | None, typer.Option("--save-recipe", help="Write the recipe these flags build to this YAML file.")]
DryOpt = Annotated[bool, typer.Option("--dry-run", help="Validate everything and print the plan; run nothing.")]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Write into an output folder that holds other files (an earlier run's folder is replaced whole without it).")
]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from the training checkpoints in its output folder (the same recipe).")]
TrainTimeOpt = Annotated[
    str | None,
    typer.Option(
        "--train-time",
        metavar="DURATION",
        help="Wall time for training (e.g. 20m, 1h30m, 90s): every training pass recovers from the original model for its share.",
    ),
]
OnOpt = Annotated[
    str | None,
    typer.Option("--on", metavar="DEVICE", help="Run it on this device over SSH (see `edgesmith device add`); results come back here, marked with the device."),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--device",
        metavar="DEVICE",
        help="Time the candidates on this device over SSH (`edgesmith device add`), and validate the result there: latency is the device's, not this machine's.",
    ),
]


def say_transfer(device: str, transfer: dict) -> None:
    """One line on stderr: what went to the device, what it already had."""
    sent, cached = transfer.get("sent_files", 0), transfer.get("cached_files", 0)
    say(f"[{device}] sent {sent} file(s), {transfer.get('sent_bytes', 0) / 2**20:.2f} MB; {cached} already there (cached by content)", err=True)


InconclusiveOpt = Annotated[
    str | None,
    typer.Option(
        "--inconclusive",
        metavar="fail|warn|pass",
        help="A budget the measurement could not decide (a noisy timing): fail (exit 1), warn (verdict INCONCLUSIVE, exit 0; the default) or pass.",
    ),
]
MlflowOpt = Annotated[str | None, typer.Option("--mlflow", metavar="URI", help="Also log to MLflow, e.g. file:./mlruns (needs the mlflow extra).")]


DEFAULT_CALIBRATION_SAMPLES = 300


def _brings_no_data(model: str) -> bool:
    """A Transformers folder or TorchScript archive has no built-in data: the digits would not fit it."""
    from edgesmith.errors import EdgesmithError
    from edgesmith.model_io import model_kind

    try:
        return model_kind(model, Path.cwd()) in ("hf", "torchscript")
    except EdgesmithError:
        return False


def default_data(model: str, data: str | None, defaults: dict) -> str | None:
    """--data, else the zoo model's own data (None here: the model's defaults fill it in). Any other model
    without --data is an error: no toy data set stands in for the user's data (``-d digits`` asks for it)."""
    if data or defaults.get("data"):
        return data
    from edgesmith.errors import ConfigError
    from edgesmith.plan import check_model

    check_model(model, Path.cwd())  # a missing or broken model is the first thing to say
    raise ConfigError(
        f"{model} needs data to calibrate and evaluate with, and none was given",
        hint="add -d with an image folder, a .txt/.jsonl/.csv/.parquet file, a datasets folder or an .npz "
        "(-d digits takes the bundled 8x8 digits, for models made for them)",
    )


def data_options(
    calibration_samples: int | None = None,
    eval_samples: int | None = None,
    preprocess: str | None = None,
    field: str | None = None,
    tokenizer: str | None = None,
    max_length: int | None = None,
) -> dict:
    """The data flags every command shares, as DataSource keys."""
    return {
        "calibration_samples": calibration_samples,
        "eval_samples": eval_samples,
        "preprocess": preprocess,
        "field": field,
        "tokenizer": tokenizer,
        "max_length": max_length,
    }


def trust_remote(flag: bool) -> None:
    """--trust-remote-code: for this process and the workers it starts (a recipe never sets it)."""
    if flag:
        os.environ["EDGESMITH_TRUST_REMOTE_CODE"] = "1"


def parse_input(text: str) -> dict:
    from edgesmith.errors import ConfigError

    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ConfigError(f"--input-shape {text!r} is not NAME:DIMS[:DTYPE]", hint="e.g. --input-shape input:batch,3,224,224")
    text_dims = parts[1].strip()
    # 1x3x224x224 is numbers only: a dimension name may hold an x (max_len, xsize)
    split = text_dims.split("x") if all(d.strip().isdigit() for d in text_dims.split("x")) else text_dims.split(",")
    dims = [int(d) if d.strip().isdigit() else d.strip() for d in split]
    spec = {"name": parts[0], "shape": dims}
    if len(parts) == 3:
        spec["dtype"] = parts[2]
    return spec


def build_recipe(
    model: str,
    *,
    weights: str | None = None,
    inputs: list[str] | None = None,
    data: str | None = None,
    eval_data: str | None = None,
    metric: str = "auto",
    outputs: list[str] | None = None,
    passes: list[dict] | None = None,
    targets: list[str] | None = None,
    out: Path | None = None,
    stop_after: str = "validate",
    name: str = "cli",
    data_options: dict | None = None,
) -> Any:
    """The same Recipe object a YAML file gives, built from flags."""
    from edgesmith.recipe import parse_recipe

    recipe: dict[str, Any] = {"name": name, "model": {"source": model}, "metric": metric, "passes": passes or [], "stop_after": stop_after}
    if weights:
        recipe["model"]["weights"] = weights
    if inputs:
        recipe["inputs"] = [parse_input(i) for i in inputs]
    if outputs:
        recipe["outputs"] = list(outputs)
    if not (data or eval_data) and stop_after == "export":
        recipe["data"] = {"calibration": None, "evaluation": None}  # NOTE: parity runs on seeded inputs of the spec's shape
    elif not (data or eval_data) and _brings_no_data(model):
        if stop_after != "export":
            from edgesmith.errors import ConfigError

            raise ConfigError(
                f"{model} needs data to calibrate and evaluate with, and none was given",
                hint="add -d with a text/JSONL/CSV file, an image folder, a datasets folder or an .npz",
            )
        recipe["data"] = {"calibration": None, "evaluation": None}
    if data or eval_data:
        calib_src = data or eval_data
        opts = {k: v for k, v in (data_options or {}).items() if v is not None}
        cal_n, eval_n = opts.pop("calibration_samples", None), opts.pop("eval_samples", None)
        calibration = {"source": calib_src, **opts, **({"samples": cal_n} if cal_n else {})}
        evaluation = {"source": eval_data or calib_src, **opts, **({"samples": eval_n} if eval_n else {})}
        from edgesmith.data.records import is_record_source

        if eval_data is None and calib_src is not None and is_record_source(calib_src, Path.cwd()):
            # NOTE: one folder or file: calibration and evaluation get disjoint parts of it, never the same sample
            calibration["split_at"] = evaluation["split_at"] = cal_n or DEFAULT_CALIBRATION_SAMPLES
        recipe["data"] = {"calibration": calibration, "evaluation": evaluation}
    if targets:
        recipe["targets"] = targets
    if out:
        recipe["output_dir"] = str(out)
    return parse_recipe(recipe, "flags")


def execute(
    recipe: Any,
    base_dir: Path,
    *,
    save_recipe: Path | None,
    dry_run: bool,
    trust: bool = False,
    out: Path | None = None,
    quiet: bool = False,
    mlflow: str | None = None,
    force: bool = False,
    resume: bool = False,
    train_time: str | None = None,
    inconclusive: str | None = None,
) -> None:
    from edgesmith import api
    from edgesmith.report import print_verdicts

    if save_recipe:
        from edgesmith.outputs import atomic_write_text, check_writable

        check_writable(save_recipe.parent)
        # NOTE: a recipe's paths are read relative to its folder: rewrite them for where it is saved
        atomic_write_text(save_recipe, recipe.relocated(base_dir, save_recipe.parent).to_yaml())
        say(f"recipe written to {save_recipe}", err=True)
    if inconclusive is not None:
        recipe = recipe.model_copy(update={"inconclusive": check_policy(inconclusive)})
    if mlflow and not dry_run:
        from edgesmith.tracking import check_tracking_uri

        check_tracking_uri(mlflow)
    if train_time is not None:
        from edgesmith.units import parse_duration

        recipe = recipe.with_train_time(parse_duration(train_time, "--train-time") / 60)
    result = api.run(recipe, base_dir=base_dir, out_dir=out, trust_checkpoint=trust, dry_run=dry_run, reporter=RichReporter(), force=force, resume=resume)
    if result.verdict == "dry-run":
        say("plan (dry run, nothing executed):")
        for i, step in enumerate(result.plan, 1):
            say(f"  {i}. {step}")
        return
    if result.manifest.get("targets") and recipe.stop_after == "validate":
        print_verdicts(result.manifest, str(result.out_dir))
    else:
        say(f"done: {result.verdict}; outputs in {result.out_dir}")
    if mlflow and result.out_dir is not None:
        from edgesmith.errors import redact
        from edgesmith.tracking import log_to_mlflow

        run_id = log_to_mlflow(mlflow, result.manifest, [result.out_dir / "manifest.json", result.out_dir / "report.md"])
        say(f"logged to MLflow {redact(mlflow)} (run {run_id})", err=True)
    warn_inconclusive(result.verdict)
    if result.verdict == "fail":
        raise typer.Exit(EXIT_BUDGET_FAILED)


def check_policy(policy: str) -> str:
    from edgesmith.errors import ConfigError
    from edgesmith.evaluate.judge import INCONCLUSIVE_POLICIES

    if policy not in INCONCLUSIVE_POLICIES:
        raise ConfigError(f"--inconclusive {policy!r} is not one of {', '.join(INCONCLUSIVE_POLICIES)}", hint="fail, warn (the default) or pass")
    return policy


def warn_inconclusive(verdict: str) -> None:
    if verdict == "inconclusive":
        say(
            "warning: verdict INCONCLUSIVE — a budget could not be decided (a timing on a busy or noisy machine); nothing was claimed from it. "
            "Exit 0 under --inconclusive warn (the default); --inconclusive fail makes it a failure.",
            err=True,
        )
