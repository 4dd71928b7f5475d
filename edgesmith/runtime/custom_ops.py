"""Custom ONNX ops as a first-class route: a domain op, its standard-op lowering, and a registration
per runtime.

A route (``CustomOpRoute``) names an ONNX domain and its ops and gives (a) ``lower``: the same
computation in standard ONNX ops, for any runtime, and (b) ``register``: per backend, a function that
makes that runtime execute the op (ONNX Runtime: a custom-op library on the session options;
OpenVINO: an extension on the Core). Every place that opens a model — export parity, compile, bench
(in its child process), validate and the device bundle — calls ``apply_registrations``; a runtime
without a registration gets one clear line naming the lowering.

Built-in routes are listed in ``_BUILTIN``; others come from the ``edgesmith.custom_ops`` entry-point
group (an object with the ``CustomOpRoute`` fields).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgesmith.errors import BackendUnavailable, InputError
from edgesmith.plugins import Loaded, load_group

# the ONNX standard and the runtimes' own domains (an ORT-optimised model holds com.microsoft.nchwc ops)
STANDARD_PREFIXES = ("ai.onnx", "com.microsoft")
_BUILTIN = ("edgesmith.runtime.ops.domain",)
LOWERING_PASS = "lower_custom_ops"


@dataclass(frozen=True)
class CustomOpRoute:
    name: str  # the ONNX domain, e.g. "edgesmith"
    ops: tuple[str, ...]
    lower: Callable[[Any], Any]  # onnx.ModelProto -> onnx.ModelProto with standard ops only
    register: dict[str, Callable[[Any], None]] = field(default_factory=dict)  # backend -> fn(session options | ov.Core)
    summary: str = ""
    check: Callable[[Any], None] | None = None  # onnx.ModelProto -> None, or one clear error naming a malformed node


def _accept(obj: Any) -> Any:
    return obj if isinstance(obj, CustomOpRoute) else None


@lru_cache(maxsize=1)
def _routes() -> Loaded:
    loaded = Loaded()
    for mod in _BUILTIN:
        route = importlib.import_module(mod).ROUTE
        loaded.add(route.name, route, "edgesmith")
    load_group("edgesmith.custom_ops", loaded, _accept, "ROUTE")
    return loaded


def known_routes() -> dict[str, CustomOpRoute]:
    return dict(_routes().objects)


def custom_domains(model: Any) -> dict[str, set[str]]:
    """Custom (non-standard) domains a model's nodes use, with their op types."""
    found: dict[str, set[str]] = {}
    for node in model.graph.node:
        if node.domain and not node.domain.startswith(STANDARD_PREFIXES):
            found.setdefault(node.domain, set()).add(node.op_type)
    return found


def file_domains(path: Path) -> dict[str, set[str]]:
    """Custom domains of an ONNX file (``custom_domains``) or an OpenVINO IR (``ir_domains``), parsed once per
    file version (every session, compile and benchmark asks, and a large model takes a while to parse)."""
    st = Path(path).stat()
    return _file_domains(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=64)
def _file_domains(path: str, mtime_ns: int, size: int) -> dict[str, set[str]]:
    if path.lower().endswith(".xml"):
        return ir_domains(Path(path))
    import onnx

    return custom_domains(onnx.load(path, load_external_data=False))


def ir_domains(path: Path) -> dict[str, set[str]]:
    """Custom op sets of an OpenVINO IR (.xml): layers whose version is not a standard ``opsetN`` (a custom op
    kept by a compiled extension, e.g. ``type="BinaryConv" version="edgesmith"``)."""

    found: dict[str, set[str]] = {}
    text = Path(path).read_text(errors="replace")
    for op, version in re.findall(r'<layer [^>]*type="([^"]+)" version="([^"]+)"', text):
        if not re.fullmatch(r"opset\d+|experimental|internal", version):
            found.setdefault(version, set()).add(op)
    return found


def routes_for(path: Path) -> list[CustomOpRoute]:
    """The routes a model needs (none for a standard model); an unknown domain is refused. ONNX files by
    their node domains, OpenVINO IRs by their custom op sets."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".onnx", ".xml"):
        return []
    domains = file_domains(path)
    routes = known_routes()
    unknown = sorted(d for d in domains if d not in routes)
    if unknown:
        raise InputError(
            f"{Path(path).name} uses custom ops of domain {unknown[0]!r} ({', '.join(sorted(domains[unknown[0]]))}) that no installed route knows",
            hint=f"install the plugin that provides it, or export with standard ops (known: {', '.join(sorted(routes)) or 'none'})",
        )
    return [routes[d] for d in sorted(domains)]


def apply_registrations(backend: str, target: Any, path: Path) -> list[str]:
    """Make ``backend`` able to run ``path``'s custom ops (``target``: ORT SessionOptions or an
    OpenVINO Core). Returns the domains registered."""
    done = []
    routes = routes_for(path)
    if Path(path).suffix.lower() == ".onnx" and any(r.check for r in routes):
        import onnx

        model = onnx.load(str(path))  # NOTE: every node checked here, before a runtime's native code sees it
        for route in routes:
            if route.check is not None:
                route.check(model)
    for route in routes:
        reg = route.register.get(backend)
        if reg is None:
            raise BackendUnavailable(
                f"{backend} has no registration for custom op domain {route.name!r} ({', '.join(route.ops)}) used by {Path(path).name}",
                hint=f"lower it to standard ONNX ops: add `{{type: {LOWERING_PASS}}}` to the recipe's passes (or run edgesmith.runtime.custom_ops.lower_file)",
            )
        reg(target)
        done.append(route.name)
    return done


def lower_model(model: Any, only: set[str] | None = None) -> tuple[Any, list[str]]:
    """Every custom op of a known route replaced by its standard-op lowering."""
    lowered = []
    for domain in sorted(custom_domains(model)):
        if only and domain not in only:
            continue
        route = known_routes().get(domain)
        if route is None:
            raise InputError(f"no route knows custom op domain {domain!r}, so it cannot be lowered", hint="install the plugin that provides it")
        model = route.lower(model)
        lowered.append(domain)
    return model, lowered


def lower_file(src: Path, dst: Path) -> list[str]:
    import onnx

    model, lowered = lower_model(onnx.load(str(src)))
    onnx.save(model, str(dst))
    return lowered
