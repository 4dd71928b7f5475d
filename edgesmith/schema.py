"""pydantic helpers shared by recipes and profiles (strict models, one-line error messages) and the two
recipe records that lower layers read too: a model input (``InputSpec``) and a model reference (``ModelSpec``)."""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgesmith.errors import ConfigError

# Bounds on every count a user can give (flags, recipes, profiles): past them a typo, not a measurement.
MAX_THREADS = 256
MAX_BATCH = 4096
MAX_ITERATIONS = 1_000_000
MAX_SECONDS = 3600.0
MAX_SEED = 2**32 - 1  # numpy's and Optuna's samplers take no other
DEVICE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # a device added with `edgesmith device add` (a file name too)


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
        got = repr(first.get("input"))
        msg = f"{msg}, got {got if len(got) <= 80 else got[:60] + ' ...'}"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return ConfigError(f"{what}: {loc}: {msg}{more}", hint=hint)


Dtype = Literal["float32", "float16", "int64", "int32", "uint8", "bool"]


def fixed_batch(input_specs: Any) -> int | None:
    """The batch every input fixes (an ONNX model exported with batch 1 takes batches of 1), else None."""
    sizes = {s.shape[0] if s.shape and isinstance(s.shape[0], int) else None for s in input_specs}
    return sizes.pop() if len(sizes) == 1 and None not in sizes else None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class InputSpec(Strict):
    name: str
    shape: list[int | str] = Field(description="first dimension is the batch; a name (e.g. 'batch') marks it dynamic")
    dtype: Dtype = "float32"
    preprocess: str | dict[str, Any] | None = Field(
        default=None, description="images: how an image becomes this input when the data source does not say (the model's own normalisation)"
    )

    @field_validator("shape")
    @classmethod
    def _shape(cls, v: list) -> list:
        if not v:
            raise ValueError("shape must have at least one dimension (the batch)")
        if any(isinstance(d, int) and d < 1 for d in v):
            raise ValueError(f"dimensions must be >= 1 or a name, got {v}")
        bad = [d for d in v if isinstance(d, str) and (not d.strip() or _is_number(d))]
        if bad:
            # NOTE: '' (from 'batch,,8') or '-1' (ONNX's "any size") became a dimension named so; a name is kept as
            # it is (exporters write 'batch_size', 's0', 'past_sequence_length + 1')
            raise ValueError(f"dimension {bad[0]!r} in {v} is neither a size >= 1 nor a name (e.g. 'batch' for a dynamic one)")
        return v


class ModelSpec(Strict):
    source: str = Field(description="package.module:factory, a .pt2 program, or an .onnx file")
    weights: str | None = None
    kwargs: dict[str, Any] = {}
    trust_checkpoint: bool = Field(default=False, description="never honoured from a file: trust comes from --trust-checkpoint")
    reference: str | None = Field(default=None, description="float ONNX model to validate against when `source` is already compressed")

    @field_validator("trust_checkpoint")
    @classmethod
    def _no_trust_from_files(cls, v: bool) -> bool:
        # NOTE: only the person at the keyboard grants trust (the flag or EDGESMITH_TRUST_CHECKPOINT=1)
        if v:
            raise ValueError(
                "trust_checkpoint cannot be set in a recipe (hint: pass --trust-checkpoint, or set "
                "EDGESMITH_TRUST_CHECKPOINT=1, when you trust the checkpoint's source)"
            )
        return v

    @field_validator("reference")
    @classmethod
    def _reference(cls, v: str | None) -> str | None:
        if v is not None and not v.endswith(".onnx"):
            raise ValueError(f"reference must be an .onnx file, got {v!r}")
        return v


# A recipe or profile is a few kilobytes with a handful of anchors; past these it is an attack
# (a "billion laughs" alias bomb) or a mistake, refused before anything expands it.
MAX_YAML_BYTES = 1 << 20
MAX_YAML_ALIASES = 64


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last one silently: a
    second ``model:`` or ``passes:`` block replaced the first without a word)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is not None and key != "<<" and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})", key_node.start_mark
                    )
                seen.setdefault(key, key_node.start_mark.line)
        return super().construct_mapping(node, deep)


def load_yaml(path: Any, what: str) -> Any:
    """``yaml.safe_load`` of a user file, refused (one line, no quoted content) when it is not text, not
    YAML, too large, or uses more aliases than any real recipe needs."""

    try:
        raw = path.read_bytes()
        if len(raw) > MAX_YAML_BYTES:
            raise ConfigError(f"{path.name} is {len(raw)} bytes; a {what} is at most {MAX_YAML_BYTES} bytes", hint=f"give the {what} file itself")
        text = raw.decode()
        aliases, open_anchors = 0, []  # the anchors of the collections being read: an alias to one of them is a cycle
        for e in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(e, yaml.CollectionStartEvent):
                open_anchors.append(e.anchor)
            elif isinstance(e, yaml.CollectionEndEvent):
                open_anchors.pop()
            elif isinstance(e, yaml.AliasEvent):
                aliases += 1
                if e.anchor in open_anchors:
                    raise ConfigError(
                        f"{path.name}: alias *{e.anchor} (line {e.start_mark.line + 1}) sits inside its own anchor &{e.anchor}: a structure that contains itself",
                        hint=f"a {what} is a tree: copy the values instead of referring back to the enclosing block",
                    )
        if aliases > MAX_YAML_ALIASES:
            raise ConfigError(
                f"{path.name} uses {aliases} YAML aliases (at most {MAX_YAML_ALIASES}): refusing to expand it",
                hint=f"write the {what} out without deeply nested anchors",
            )
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader (tags of Python objects refused)
    except yaml.YAMLError as exc:
        twice = "given twice" in str(exc)
        hint = "keep one of them (merge what each says)" if twice else "check indentation and quoting"
        raise ConfigError(f"{path.name} is not valid YAML: {' '.join(str(exc).split())[:200]}", hint=hint) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path.name} is not a text file", hint=f"give a YAML {what}") from exc
