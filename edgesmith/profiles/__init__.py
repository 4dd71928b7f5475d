"""Built-in target profiles (YAML files in ``builtin/``) and loading of user profile files."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from edgesmith.errors import ConfigError
from edgesmith.metrics import FIDELITY_METRICS
from edgesmith.profiles.schema import Goal, Profile
from edgesmith.schema import format_validation_error, load_yaml

BUILTIN_DIR = Path(__file__).with_name("builtin")

__all__ = ["Goal", "Profile", "builtin_names", "load_profile"]


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_profile(name_or_path: str, base_dir: Path | None = None) -> Profile:
    """A built-in profile by name, or a YAML file (relative paths resolve against ``base_dir``)."""

    if name_or_path in builtin_names():
        path = BUILTIN_DIR / f"{name_or_path}.yaml"
    else:
        path = Path(name_or_path)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if path.suffix not in {".yaml", ".yml"} or not path.is_file():
            raise ConfigError(
                f"unknown profile {name_or_path!r}",
                hint=f"built-in profiles: {', '.join(builtin_names())}; or give a path to a profile .yaml file",
            )

    data = load_yaml(path, "profile")
    if not isinstance(data, dict):
        raise ConfigError(f"profile {path} must be a YAML mapping", hint="see `edgesmith profiles show x86-avx512-vnni-ort`")
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(exc, f"profile {path.name}") from exc


def budget_overrides(items: list[str], profile: Profile) -> list[Goal]:
    """``METRIC=VALUE`` overrides of a profile's accuracy budgets (``--budget top1=1.0``): the goal kind
    is the profile's for that metric, else ``min`` for fidelity and ``max-degradation`` for a task metric."""

    goals = {g.metric: g for g in profile.budgets}
    out = []
    for item in items:
        name, _, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"--budget {item!r} is not METRIC=NUMBER", hint="e.g. --budget top1=1.0 or --budget cosine=0.995") from None

        kind = goals[name].goal if name in goals else ("min" if name in FIDELITY_METRICS else "max-degradation")
        out.append(Goal(metric=name, goal=kind, value=number))
    return out  # replaces the profile's budget for that metric (Profile.with_overrides)
