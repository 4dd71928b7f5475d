"""Everything the command line writes for a person goes through here: ``say`` for lines, ``console`` for rich's
tables and progress. Both pass every string through ``errors.shown`` (secrets masked, terminal escapes dropped),
so a file name like ``m<ESC>]0;title<BEL>.onnx`` or a device's reply cannot retitle or recolour the user's
terminal from a table title, a cell or a 'written to' line. tests/test_architecture.py keeps bare ``print`` and
``Console`` out of the rest of the package."""

from __future__ import annotations

import sys
from typing import Any

from edgesmith.errors import shown


def say(*parts: Any, err: bool = False, end: str = "\n") -> None:
    """``print`` of user-facing text, made safe for a terminal (``err``: to stderr)."""
    print(shown(" ".join(str(p) for p in parts)), file=sys.stderr if err else sys.stdout, end=end)  # noqa: T201 - the one place


def console(**kwargs: Any) -> Any:
    """A ``rich.console.Console`` whose every string (titles, cells, markup text) is made safe before it renders."""
    from rich.console import Console

    class SafeConsole(Console):
        def render_str(self, text: str, **kw: Any) -> Any:
            return super().render_str(shown(text), **kw)

    return SafeConsole(**kwargs)
