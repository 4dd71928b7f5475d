"""Built-in target profiles (YAML files in ``builtin/``) and loading of user profile files."""

from __future__ import annotations

from pathlib import Path

from edgesmith.errors import ConfigError
from edgesmith.profiles.schema import Goal, Profile

BUILTIN_DIR = Path(__file__).with_name("builtin")

__all__ = ["Goal", "Profile", "builtin_names", "load_profile"]


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_profile(name_or_path: str, base_dir: Path | None = None) -> Profile:
    """A built-in profile by name, or a YAML file (relative paths resolve against ``base_dir``)."""
    import yaml
    from pydantic import ValidationError

    from edgesmith.schema import format_validation_error

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
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"profile {path} is not valid YAML: {str(exc).splitlines()[0]}", hint="check indentation and quoting") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"profile {path} must be a YAML mapping", hint="see `edgesmith profiles show x86-avx512-vnni-ort`")
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(exc, f"profile {path.name}") from exc
