"""The pass registry: recipe ``type:`` name -> PassInfo, found by walking ``edgesmith.compress``."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Literal

from edgesmith.errors import ConfigError

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
    precision: str | None = None  # what the pass produces, checked against the profile's precisions
    needs_calibration: bool = False  # the pipeline then loads (and checks) calibration data first


@dataclass
class PassContext:
    """What a pass may use besides its own config: the target, data, a place to write, a log."""

    work_dir: Path
    profile: Any = None  # edgesmith.profiles.Profile
    input_specs: tuple = ()
    calibration: Any = None  # edgesmith.data.Dataset, or None
    evaluation: Any = None  # the recipe's held-out evaluation data (ONNX-stage passes), or None
    notes: list[str] = field(default_factory=list)  # shown in the report: choices made, nodes skipped
    details: dict[str, Any] = field(default_factory=dict)  # machine-readable, into the manifest
    # shared by the torch passes of one run, never written out (e.g. the float weights a quantizer
    # replaced, for bias_correction)
    scratch: dict[str, Any] = field(default_factory=dict)

    def note(self, text: str) -> None:
        self.notes.append(text)


@lru_cache(maxsize=1)
def _registry() -> dict[str, PassInfo]:
    import edgesmith.compress as root

    found: dict[str, PassInfo] = {}
    for mod in pkgutil.walk_packages(root.__path__, prefix="edgesmith.compress."):
        if mod.name.endswith(".registry"):
            continue
        info = getattr(importlib.import_module(mod.name), "PASS", None)
        if isinstance(info, PassInfo):
            found[info.name] = info
    from importlib.metadata import entry_points

    for ep in entry_points(group="edgesmith.passes"):
        info = getattr(importlib.import_module(ep.value), "PASS", None)
        if isinstance(info, PassInfo):
            found.setdefault(info.name, info)
    return found


def known_passes() -> dict[str, PassInfo]:
    return dict(sorted(_registry().items()))


def get_pass(name: str) -> PassInfo:
    reg = _registry()
    if name not in reg:
        raise ConfigError(f"unknown pass type {name!r}", hint=f"known pass types: {', '.join(sorted(reg))}")
    return reg[name]


def build_pass_config(name: str, options: dict[str, Any]) -> Any:
    """Validate a recipe's pass options into the pass's frozen config dataclass."""
    from pydantic import TypeAdapter, ValidationError

    info = get_pass(name)
    allowed = [f.name for f in dataclasses.fields(info.config)]
    unknown = [k for k in options if k not in allowed]
    if "recover" in unknown:
        raise ConfigError(f"pass {name!r} has no recovery step: it does not train, so a `recover:` block cannot apply to it",
                          hint="recovery goes on passes that train the compressed model (qat); or add a `distill` pass after it")
    if unknown:
        raise ConfigError(
            f"pass {name!r}: unknown option {unknown[0]!r} (allowed: {', '.join(allowed)})",
            hint="check the option's spelling; `edgesmith passes` lists each pass's options",
        )
    try:
        return TypeAdapter(info.config).validate_python(options)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"]) or "options"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] != "value_error":
            msg += f", got {err.get('input')!r}"
        raise ConfigError(f"pass {name!r}: {loc}: {msg}", hint=f"options of {name}: {', '.join(allowed)}") from exc


def config_as_dict(cfg: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
