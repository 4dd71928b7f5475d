"""edgesmith command line: parse flags, build a Recipe, call the layer below, map errors to exit codes.

A package with one module per command group; no business logic lives here. torch, onnxruntime and
openvino are not imported by ``--help``.
"""

from __future__ import annotations

from edgesmith.cli import catalog, convert, devices, gate, measure, search  # noqa: F401, I001 - each registers its commands, in help order
from edgesmith.cli.app import app, keep_layouts
from edgesmith.cli.common import build_recipe, guarded

keep_layouts(app)

__all__ = ["app", "build_recipe", "guarded", "main"]


def main() -> None:
    import signal

    from edgesmith.cli.common import on_sigterm

    signal.signal(signal.SIGTERM, on_sigterm)  # handled like Ctrl-C: clean up, say so, exit 143
    app()
