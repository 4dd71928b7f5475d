"""The Typer application and its command groups (commands register themselves in the sibling modules)."""

from __future__ import annotations

import typer

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
