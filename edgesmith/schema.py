"""pydantic helpers shared by recipes and profiles (strict models, one-line error messages) and the two
recipe records that lower layers read too: a model input (``InputSpec``) and a model reference (``ModelSpec``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


Dtype = Literal["float32", "float16", "int64", "int32", "uint8", "bool"]


class InputSpec(Strict):
    name: str
    shape: list[int | str] = Field(description="first dimension is the batch; a name (e.g. 'batch') marks it dynamic")
    dtype: Dtype = "float32"

    @field_validator("shape")
    @classmethod
    def _shape(cls, v: list) -> list:
        if not v:
            raise ValueError("shape must have at least one dimension (the batch)")
        if any(isinstance(d, int) and d < 1 for d in v):
            raise ValueError(f"dimensions must be >= 1 or a name, got {v}")
        return v


class ModelSpec(Strict):
    source: str = Field(description="package.module:factory, a .pt2 program, or an .onnx file")
    weights: str | None = None
    kwargs: dict[str, Any] = {}
    trust_checkpoint: bool = False
    reference: str | None = Field(default=None, description="float ONNX model to validate against when `source` is already compressed")

    @field_validator("reference")
    @classmethod
    def _reference(cls, v: str | None) -> str | None:
        if v is not None and not v.endswith(".onnx"):
            raise ValueError(f"reference must be an .onnx file, got {v!r}")
        return v
