"""`import edgesmith` and `edgesmith --help` must not load torch, onnxruntime or openvino."""

import re
import subprocess
import sys

HEAVY = ("torch", "onnxruntime", "openvino", "tensorrt", "onnx", "sklearn", "nncf", "neural_compressor")

PROBE = """
import sys
{body}
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})
print('HEAVY:' + ','.join(heavy))
"""


def _loaded(body: str) -> str:
    code = PROBE.format(body=body, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1].removeprefix("HEAVY:")


def test_import_edgesmith_loads_no_heavy_library():
    assert _loaded("import edgesmith, edgesmith.recipe, edgesmith.profiles, edgesmith.runtime") == ""


def test_help_loads_no_heavy_library():
    body = "from edgesmith.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass"
    assert _loaded(body) == ""


def test_subcommand_help_and_pass_listing_load_no_heavy_library():
    body = (
        "from edgesmith.cli import app\nfor a in (['run', '--help'], ['quantize', '--help'], ['passes']):\n"
        "    try:\n        app(a)\n    except SystemExit:\n        pass"
    )
    assert _loaded(body) == ""


def test_recipe_validation_loads_no_heavy_library():
    body = (
        "from edgesmith.recipe import parse_recipe\n"
        "parse_recipe({'model': {'source': 'edgesmith.zoo:digits_cnn'}, 'passes': [{'type': 'ptq_int8', 'calibration': 'entropy'}]})"
    )
    assert _loaded(body) == ""


def test_custom_op_registration_loads_only_the_runtime():
    """The benchmark child of a custom-op model registers the ops: onnxruntime-extensions' offline converter
    would import transformers and torch there (peak memory 294 MB against 75 MB) and switch protobuf to pure Python."""
    body = (
        "import os, onnxruntime as ort\nfrom edgesmith.runtime.ops import domain\n"
        "domain.register_onnxruntime(ort.SessionOptions())\n"
        "assert 'PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION' not in os.environ\n"
        "assert 'transformers' not in sys.modules\n"
    )
    assert {m.split(".")[0] for m in _loaded(body).split(",")} == {"onnx", "onnxruntime"}  # onnxruntime-extensions needs onnx; nothing else


def test_every_command_help_keeps_its_examples_and_recipe_lines():
    """click re-flows paragraphs: a recipe's lines and the examples ran into one another in `run --help`."""
    import typer

    from edgesmith.cli import app

    def walk(cmd, path):
        ctx = cmd.context_class(cmd, info_name=" ".join(path), terminal_width=100, max_content_width=100)
        yield path, cmd.get_help(ctx)
        for name in getattr(cmd, "list_commands", lambda ctx: [])(ctx):
            yield from walk(cmd.get_command(ctx, name), [*path, name])

    helps = dict((" ".join(p), text.split("Options:")[0]) for p, text in walk(typer.main.get_command(app), ["edgesmith"]))
    assert len(helps) > 20
    merged = {name: line for name, text in helps.items() for line in text.splitlines() if re.search(r"\S.*\bExamples?:", line)}
    assert merged == {}
    assert "\n      model: {source: edgesmith.zoo:pretrained_digits_cnn}\n      inputs:" in helps["edgesmith run"]
