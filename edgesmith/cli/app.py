"""The Typer application and its command groups (commands register themselves in the sibling modules)."""

from __future__ import annotations

import inspect
import re

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


def keep_layout(doc: str) -> str:
    """A command's help as written: click re-flows every paragraph, which ran a recipe's lines and the
    examples into one another; a paragraph holding an example or an indented block is marked to keep its lines
    (click's ``\\b``), and an example that follows a sentence on its line starts a paragraph of its own."""
    doc = re.sub(r"[ \t]{2,}(Examples?:)", r"\n\n\1", inspect.cleandoc(doc))
    paragraphs = []
    for para in doc.split("\n\n"):
        if not para.startswith("\b") and any(line.startswith((" ", "Example")) for line in para.splitlines()):
            para = "\b\n" + para
        paragraphs.append(para)
    return "\n\n".join(paragraphs)


def keep_layouts(typer_app: typer.Typer) -> None:
    """``keep_layout`` on every command's help, in every group (run once, after the commands registered)."""
    for info in typer_app.registered_commands:
        doc = info.help or inspect.getdoc(info.callback) or ""
        if doc:
            info.help = keep_layout(doc)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            keep_layouts(group.typer_instance)
