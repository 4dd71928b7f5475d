"""Follow the recipe from the CLI through a run: which modules it enters, and how often it goes back up.

Every Python call that receives a ``Recipe`` (as an argument, or as ``self``) is an *entry* into the
module that defines the called function; consecutive entries into one module count once. An entry into a
module of a higher layer than the previous entry's (the layers of the import-linter contract in
pyproject.toml: cli > api > optimize > search/tune/gate/device > engine > pipeline > plan > ...) is the recipe
*going back up*. Issue 23 counted 41 entries into 12 modules and 22 ups before the recipe was resolved once
into a Plan; the aim is at most 10 ups.

    python -m benchmarks.recipe_trace            # the demo recipe through `edgesmith run` (about 20 s)
"""

from __future__ import annotations

import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def layers() -> list[list[str]]:
    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    return [[m.strip() for m in layer.split("|")] for layer in contract["layers"]]


def layer_of(module: str, order: list[list[str]]) -> int | None:
    """The index of the layer (0 = top) holding ``module`` or a package above it."""
    for i, layer in enumerate(order):
        if any(module == m or module.startswith(m + ".") for m in layer):
            return i
    return None


@dataclass
class Trace:
    entries: list[str] = field(default_factory=list)
    ups: list[tuple[str, str]] = field(default_factory=list)

    @property
    def modules(self) -> list[str]:
        return sorted(set(self.entries))


def trace_run(argv: list[str]) -> Trace:
    """Run ``edgesmith ARGV`` in this process, following every call that receives a Recipe."""
    from edgesmith.cli.app import app
    from edgesmith.recipe import Recipe

    order = layers()
    t = Trace()

    def holds_recipe(frame: Any) -> bool:
        code = frame.f_code
        for name in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]:
            if isinstance(frame.f_locals.get(name), Recipe):
                return True
        return False

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("edgesmith") or not holds_recipe(frame):
            return
        if t.entries and t.entries[-1] == module:
            return
        if t.entries:
            before, now = layer_of(t.entries[-1], order), layer_of(module, order)
            if before is not None and now is not None and now < before:
                t.ups.append((t.entries[-1], module))
        t.entries.append(module)

    sys.setprofile(profile)
    try:
        app(argv, standalone_mode=True)
    except SystemExit:
        pass
    finally:
        sys.setprofile(None)
    return t


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        recipe = ROOT / "edgesmith" / "recipes" / "demo.yaml"
        t = trace_run(["run", str(recipe), "--out", str(Path(tmp) / "out")])
    print(f"the recipe entered {len(t.modules)} modules {len(t.entries)} times and went back up {len(t.ups)} times")
    print("modules: " + ", ".join(t.modules))
    for a, b in t.ups:
        print(f"  up: {a} -> {b}")


if __name__ == "__main__":
    main()
