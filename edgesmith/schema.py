"""pydantic helpers shared by recipes and profiles: strict models and one-line error messages."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from edgesmith.errors import ConfigError


class Strict(BaseModel):
    """A model that rejects unknown keys, naming the key and the allowed ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = set(cls.model_fields)
            unknown = [k for k in data if k not in allowed]
            if unknown:
                raise ValueError(f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
        return data


def format_validation_error(exc: ValidationError, what: str) -> ConfigError:
    """Turn pydantic's multi-line report into a ConfigError with the first problem on one line."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-")) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    hint = "fix that field; `edgesmith run --help` shows an example recipe"
    if " (hint: " in msg:  # a nested edgesmith error brings its own hint
        msg, _, hint = msg.partition(" (hint: ")
        hint = hint.removesuffix(")")
    elif first["type"] != "value_error" and "Input should be" in msg:
        msg = f"{msg}, got {first.get('input')!r}"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return ConfigError(f"{what}: {loc}: {msg}{more}", hint=hint)
