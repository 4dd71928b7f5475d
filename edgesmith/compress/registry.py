"""The pass registry: recipe ``type:`` name -> PassInfo, from ``edgesmith.compress`` and plugins.

Built-in passes are found by walking ``edgesmith.compress``; third-party passes come from the
``edgesmith.passes`` entry-point group (``name = "pkg.module:PASS"`` or a module defining ``PASS``),
loaded through ``edgesmith.plugins`` so a broken plugin is listed, not fatal.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

import edgesmith.compress as root
from edgesmith.compress.contract import Records
from edgesmith.errors import ConfigError, InputError
from edgesmith.plugins import Loaded, load_group

Stage = Literal["torch", "onnx"]


@dataclass(frozen=True)
class PassInfo:
    """What a pass module exports. ``apply(model, cfg, ctx)`` returns the new model.

    For ``stage="torch"`` the model is an ``nn.Module``; for ``stage="onnx"`` it is the path of an
    ONNX file and ``apply`` returns the path of the file it wrote under ``ctx.work_dir``.
    """

    name: str
    stage: Stage
    config: type
    apply: Callable[..., Any]
    summary: str
    precision: str | None = None  # the format it produces (open set: compress.contract.KNOWN_FORMATS), checked against the profile
    needs_calibration: bool = False  # the pipeline then loads (and checks) calibration data first
    produces: tuple[type, ...] = ()  # typed records (compress.contract) it hands to later passes
    requires: tuple[type, ...] = ()  # records a pass before it must have produced
    runs_after: tuple[str, ...] = ()  # passes that, when the recipe has them, must come before this one
    changes_architecture: bool = False  # layer shapes change: the report shows both parameter counts
    consumes: tuple[type, ...] = ()  # records it reads when present (optional)
    custom_ops: tuple[str, ...] = ()  # ONNX domains of custom ops it may emit (export.custom_ops routes)
    float_graph: bool = False  # quantizes a float graph: refused after a quantizing pass and on a model already quantized


@dataclass
class PassContext:
    """What a pass may use besides its own config: the target, data, a place to write, a log, and the
    typed records earlier passes of the run produced (``ctx.records.get(FloatWeights)``)."""

    work_dir: Path
    profile: Any = None  # edgesmith.profiles.Profile
    input_specs: tuple = ()
    calibration: Any = None  # edgesmith.data.Dataset, or None
    evaluation: Any = None  # the recipe's held-out evaluation data (ONNX-stage passes), or None
    notes: list[str] = field(default_factory=list)  # shown in the report: choices made, nodes skipped
    details: dict[str, Any] = field(default_factory=dict)  # machine-readable, into the manifest
    records: Records = field(default_factory=Records)
    checkpoints: Any = None  # distill.checkpoint.Checkpoints: where training passes keep theirs, and whether to resume

    def note(self, text: str) -> None:
        self.notes.append(text)


def _accept(obj: Any) -> PassInfo | None:
    return obj if isinstance(obj, PassInfo) else None


@lru_cache(maxsize=1)
def _registry() -> Loaded:

    loaded = Loaded()
    for mod in pkgutil.walk_packages(root.__path__, prefix="edgesmith.compress."):
        if mod.name.rsplit(".", 1)[-1] in ("registry", "contract"):
            continue
        info = getattr(importlib.import_module(mod.name), "PASS", None)
        if isinstance(info, PassInfo):
            loaded.add(info.name, info, "edgesmith")
    load_group("edgesmith.passes", loaded, _accept, "PASS")
    return loaded


def register_pass(info: PassInfo, origin: str = "in-process") -> None:
    """Register a pass defined in the running process (a notebook, a test) without packaging it;
    ``unregister_pass`` removes it again. Installed plugins use the ``edgesmith.passes`` entry points."""
    _registry().add(info.name, info, origin)


def unregister_pass(name: str) -> None:
    reg = _registry()
    if reg.origin.get(name) == "edgesmith":
        raise ConfigError(f"pass {name!r} is built in and cannot be unregistered", hint="unregister only passes you registered")
    reg.objects.pop(name, None)
    reg.origin.pop(name, None)


def known_passes() -> dict[str, PassInfo]:
    return dict(sorted(_registry().objects.items()))


def plugin_problems() -> tuple[list[Any], dict[str, list[str]]]:
    """Plugins that failed to load, and names claimed twice (with who claims them)."""
    reg = _registry()
    return list(reg.broken), dict(reg.conflicts)


def pass_origin(name: str) -> str:
    return _registry().origin.get(name, "")


def get_pass(name: str) -> PassInfo:
    reg = _registry()
    reg.check_claim(name, "pass type")
    if name not in reg.objects:
        broken = [b for b in reg.broken if b.name == name]
        if broken:
            raise ConfigError(
                f"pass type {name!r} comes from a plugin that failed to load ({broken[0].distribution}: {broken[0].error})",
                hint="fix or reinstall that package; `edgesmith passes` lists broken plugins",
            )
        known = sorted(reg.objects)
        close = [k for k in known if k.startswith(name)][:4] or difflib.get_close_matches(name, known, n=4, cutoff=0.6)
        raise ConfigError(
            f"unknown pass type {name!r}",
            hint=(f"did you mean {', '.join(close)}? " if close else "") + f"`edgesmith passes` lists all {len(known)} with what each does",
        )
    return reg.objects[name]


def build_pass_config(name: str, options: dict[str, Any]) -> Any:
    """Validate a recipe's pass options into the pass's frozen config dataclass."""

    info = get_pass(name)
    allowed = [f.name for f in dataclasses.fields(info.config)]
    unknown = [k for k in options if k not in allowed]
    if "recover" in unknown:
        raise ConfigError(
            f"pass {name!r} has no recovery step: it does not train, so a `recover:` block cannot apply to it",
            hint="recovery goes on passes that train the compressed model (qat); or add a `distill` pass after it",
        )
    if unknown:
        raise ConfigError(
            f"pass {name!r}: unknown option {unknown[0]!r} (allowed: {', '.join(allowed)})",
            hint="check the option's spelling; `edgesmith passes` lists each pass's options",
        )
    try:
        cfg: Any = TypeAdapter(info.config).validate_python(options)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"]) or "options"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] != "value_error":
            msg += f", got {err.get('input')!r}"
        raise ConfigError(f"pass {name!r}: {loc}: {msg}", hint=f"options of {name}: {', '.join(allowed)}") from exc
    check_ranges(name, cfg)
    return cfg


# What a number means by its name, for every pass (plugins included), checked after the pass's own schema: a
# count of zero, a negative rate or a seed numpy refuses passed the schemas of 12 passes and failed mid-run (exit 3;
# binarize's mst_every: 0 divided by zero)
RANGES: tuple[tuple[re.Pattern[str], str], ...] = (
    # counts and durations (an int > 0 is >= 1; fractional epochs stay legal)
    (re.compile(r"(^|_)(batch_size|samples|steps|every|epochs|iterations|rounds|trials|group_size|minutes|lr|temperature)$"), "> 0"),
    (re.compile(r"(^|_)(seed|regularizer|lambda|rtol|atol|max_drop|weight_decay)$"), ">= 0"),
    (re.compile(r"(^|_)(decay|alpha|momentum)$"), "in [0, 1]"),
)
_BOUNDS = {"> 0": lambda v: v > 0, ">= 0": lambda v: v >= 0, "in [0, 1]": lambda v: 0 <= v <= 1}


def check_ranges(name: str, cfg: Any, where: str = "") -> None:
    """Each numeric option within what its name means (``RANGES``), in nested blocks too (``recover:``), or one
    line naming the option and the range."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_ranges(name, value, f"{where}{f.name}.")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        for pattern, bound in RANGES:
            if pattern.search(f.name):
                if not math.isfinite(value) or not _BOUNDS[bound](value):
                    raise ConfigError(
                        f"pass {name!r}: {where}{f.name} must be {bound}, got {value!r}", hint=f"`edgesmith passes` lists {name}'s options and defaults"
                    )
                break


def config_as_dict(cfg: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


# formats whose graph holds no float weights left to quantize; ops that carry quantized values in a graph
QUANTIZED_FORMATS = frozenset({"int8", "int8-weights", "fp16", "int4-weights"})
QUANTIZED_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "MatMulNBits", "QGemm"}
)


def check_float_graph(info: PassInfo, path: Path) -> None:
    """A quantizing ONNX pass (``float_graph``) gets a float graph: a model already quantized (by the user or an
    earlier pass) is refused in one line naming the nodes, not handed to a quantizer that fails on its own files."""
    if not info.float_graph:
        return
    import onnx

    found: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.op_type in QUANTIZED_OPS:
            found[node.op_type] = found.get(node.op_type, 0) + 1
    if found:
        ops = ", ".join(f"{n} {op}" for op, n in sorted(found.items()))
        raise InputError(
            f"pass {info.name!r} quantizes a float model, and {path.name} is already quantized ({ops})",
            hint="give the float model (a run keeps it as model.onnx), or drop the pass: validate and bench take a quantized model as it is",
        )


def check_order(pass_types: list[str]) -> None:
    """Refuse a pass order that breaks a declared requirement, in one line naming both passes."""
    infos = [get_pass(t) for t in pass_types]
    for i, info in enumerate(infos):
        before, later = infos[:i], infos[i + 1 :]
        quantized = next((p for p in before if p.precision in QUANTIZED_FORMATS), None)
        if info.float_graph and quantized is not None:
            raise ConfigError(
                f"pass {info.name!r} quantizes a float graph, and {quantized.name!r} before it already made it {quantized.precision}",
                hint=f"list {info.name!r} once"
                if quantized.name == info.name
                else f"keep one of {quantized.name!r} and {info.name!r} (a target that needs both formats takes a recipe of its own)",
            )
        for name in info.runs_after:
            if any(p.name == name for p in later):
                raise ConfigError(
                    f"pass {info.name!r} must come after {name!r}, but the recipe lists {name!r} after it",
                    hint=f"move {name!r} before {info.name!r} in `passes:`",
                )
        for kind in info.requires:
            if any(kind in p.produces for p in before):
                continue
            producers = sorted(p.name for p in known_passes().values() if kind in p.produces)
            late = [p.name for p in later if kind in p.produces]
            what = getattr(kind, "summary", kind.__name__)
            if late:
                raise ConfigError(
                    f"pass {info.name!r} needs {what} ({kind.__name__}) from {late[0]!r}, which the recipe lists after it",
                    hint=f"move {late[0]!r} before {info.name!r} in `passes:`",
                )
            raise ConfigError(
                f"pass {info.name!r} needs {what} ({kind.__name__}), and no pass before it produces them",
                hint=f"put one of {', '.join(repr(p) for p in producers)} before {info.name!r}",
            )
