"""A Hugging Face Transformers folder as a model: ``config.json`` + weights (+ tokenizer files), or a
sentence-transformers folder (``modules.json``: transformer, pooling, normalisation).

The class comes from the config's ``architectures`` (``BertForSequenceClassification`` ...), inputs from
the tokenizer (``input_ids``, ``attention_mask``, ``token_type_ids``: int64 ``[batch, sequence]``) or,
for vision models, from the config (``pixel_values [batch, C, H, W]``); outputs are named after the
model's output fields (``logits``, ``last_hidden_state`` ...). A sentence-transformers folder exports
its pooling and normalisation as part of the graph (output ``sentence_embedding``).

Offline only: the hub is never contacted. Code shipped inside a folder (``auto_map``) runs only with
``--trust-remote-code`` (never from a recipe).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesmith._lazy import require
from edgesmith.errors import ConfigError, InputError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TRUST_ENV = "EDGESMITH_TRUST_REMOTE_CODE"


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "config.json").is_file() or (path / "modules.json").is_file())


def trust_remote_code() -> bool:
    """Set by the CLI's --trust-remote-code (and the API's trust_remote_code=True) for this process and its workers."""
    return os.environ.get(TRUST_ENV, "") == "1"


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {what} {path}: {str(exc).splitlines()[0][:160]}", hint="the file may be truncated; re-save the folder") from exc
    if not isinstance(data, dict):
        raise InputError(f"{what} {path} is not a JSON object", hint="re-save the folder with save_pretrained")
    return data


def class_names(folder: Path) -> dict[str, int] | None:
    """The model's class names -> indices from ``id2label`` (None when they are the generic LABEL_i)."""
    cfg_path = _transformer_dir(folder) / "config.json"
    if not cfg_path.is_file():
        return None
    try:
        id2label = json.loads(cfg_path.read_text(encoding="utf-8")).get("id2label") or {}
        names = {str(v): int(k) for k, v in id2label.items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    if not names or all(n == f"LABEL_{i}" for n, i in names.items()):
        return None
    return names


def _transformer_dir(folder: Path) -> Path:
    modules = folder / "modules.json"
    if modules.is_file():
        try:
            for m in json.loads(modules.read_text(encoding="utf-8")):
                if str(m.get("type", "")).endswith("Transformer"):
                    return _inside(folder, m.get("path") or "")
        except (OSError, ValueError, AttributeError, TypeError):
            pass
    return folder


def _inside(root: Path, rel: str) -> Path:
    p = (root / rel).resolve()
    if not p.is_relative_to(root.resolve()):
        raise InputError(f"{root}/modules.json points outside the folder ({rel!r})", hint="refusing path traversal from a model folder")
    return p


@dataclass
class HFModel:
    module: Any
    input_specs: list[dict]
    tokenizer_dir: Path | None
    labels: dict[str, int] | None
    description: str


def load_folder(folder: Path, trust: bool | None = None) -> HFModel:
    """Load a Transformers (or sentence-transformers) folder as an exportable module with named inputs and outputs."""

    require("transformers")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # NOTE: a folder is read as it is; nothing is downloaded
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # NOTE: edgesmith reports its own steps
    hf_logging.set_verbosity_error()
    for name in ("torchao", "torch.utils._pytree"):
        # NOTE: transformers imports torchao (installed by neural-compressor) on loading a model; on a CPU torch it
        # warns that its CUDA kernels failed to load, and torch warns about its enums: noise, not the user's business
        logging.getLogger(name).setLevel(logging.ERROR)
    trust = trust_remote_code() if trust is None else trust
    st_modules = _sentence_modules(folder)
    tdir = _transformer_dir(folder)
    cfg_json = _read_json(tdir / "config.json", "Transformers config") if (tdir / "config.json").is_file() else None
    if cfg_json is None:
        raise InputError(f"{tdir} has no config.json", hint="a Transformers folder is written by model.save_pretrained(folder)")
    if not any((tdir / f).is_file() for f in WEIGHT_FILES):
        raise InputError(
            f"Transformers folder {tdir} has no weights ({', '.join(WEIGHT_FILES[:2])} or pytorch_model.bin)",
            hint="save the model with model.save_pretrained(folder); the hub is never contacted",
        )
    model = _instantiate(tdir, cfg_json, trust)
    tokenizer_dir = tdir if _has_tokenizer(tdir) else (folder if _has_tokenizer(folder) else None)
    specs, names = _input_specs(model, tdir, tokenizer_dir, cfg_json)
    if st_modules is not None:
        pooling, normalize = st_modules
        wrapper = wrap_model(model, names, pooling=pooling, normalize=normalize)
        desc = f"sentence-transformers folder ({type(model).__name__}, {pooling} pooling{', normalised' if normalize else ''})"
    else:
        wrapper = wrap_model(model, names, image_shape=tuple(specs[0]["shape"][1:]) if names == ["pixel_values"] else (3, 224, 224))
        desc = f"Transformers folder ({type(model).__name__})"
    return HFModel(wrapper.eval(), specs, tokenizer_dir, class_names(folder), desc)


def _sentence_modules(folder: Path) -> tuple[str, bool] | None:
    path = folder / "modules.json"
    if not path.is_file():
        return None
    try:
        mods = json.loads(path.read_text(encoding="utf-8"))
        kinds = [(str(m["type"]).rsplit(".", 1)[-1], m.get("path") or "") for m in mods]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read {path}: {exc}", hint="re-save the sentence-transformers folder") from exc
    pooling, normalize = "mean", False
    for kind, rel in kinds:
        if kind == "Pooling":
            cfg = _read_json(_inside(folder, rel) / "config.json", "pooling config")
            modes = [m for m in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "lasttoken") if cfg.get(f"pooling_mode_{m}")]
            if len(modes) != 1:
                raise InputError(f"pooling {modes or 'none'} in {rel}/config.json is not supported", hint="one of cls, mean, max, mean_sqrt_len, lasttoken")
            pooling = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max", "mean_sqrt_len_tokens": "mean_sqrt_len", "lasttoken": "last"}[modes[0]]
        elif kind == "Normalize":
            normalize = True
        elif kind != "Transformer":
            raise InputError(f"sentence-transformers module {kind!r} ({rel}) is not supported", hint="supported: Transformer, Pooling, Normalize")
    return pooling, normalize


def _instantiate(tdir: Path, cfg_json: dict, trust: bool) -> Any:
    import transformers

    archs = cfg_json.get("architectures") or []
    arch = archs[0] if archs else None
    remote = bool(cfg_json.get("auto_map")) and (arch is None or not hasattr(transformers, arch))
    if remote and not trust:
        raise InputError(
            f"{tdir.name}/config.json asks to run code shipped in the folder (auto_map: {sorted(cfg_json['auto_map'])[:3]})",
            hint="pass --trust-remote-code only if you trust that folder's code (it is never honoured from a recipe)",
        )
    if arch is not None and not hasattr(transformers, arch) and not remote:
        raise InputError(
            f"architecture {arch!r} is not in transformers {transformers.__version__}", hint="upgrade transformers, or export the model to ONNX yourself"
        )
    from safetensors import SafetensorError

    try:
        if remote:
            cls = transformers.AutoModel
        else:
            cls = getattr(transformers, arch) if arch else transformers.AutoModel
        model = cls.from_pretrained(str(tdir), local_files_only=True, trust_remote_code=trust)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, EOFError, pickle.UnpicklingError, SafetensorError) as exc:
        # NOTE: the folder's files, read by transformers: truncated safetensors (SafetensorError), a truncated or
        # object-holding pytorch_model.bin (EOFError, UnpicklingError: torch.load runs with weights_only)
        if isinstance(exc, pickle.UnpicklingError):
            raise InputError(
                f"the weights in {tdir} hold Python objects, not only tensors; refused because unpickling can run arbitrary code",
                hint="re-save the folder with safetensors: model.save_pretrained(folder) where you trust it",
            ) from exc
        first = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot load the Transformers folder {tdir}: {first}", hint="check that config.json and the weights belong together") from exc
    return model.eval()


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / f).is_file() for f in ("tokenizer.json", "vocab.txt", "tokenizer.model", "spiece.model", "vocab.json", "sentencepiece.bpe.model"))


def _input_specs(model: Any, tdir: Path, tokenizer_dir: Path | None, cfg_json: dict) -> tuple[list[dict], list[str]]:
    params = list(inspect.signature(model.forward).parameters)
    main = getattr(model, "main_input_name", "input_ids")
    if main == "pixel_values":
        size = cfg_json.get("image_size", 224)
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        return [{"name": "pixel_values", "shape": ["batch", int(cfg_json.get("num_channels", 3)), h, w], "dtype": "float32"}], ["pixel_values"]
    if main != "input_ids":
        raise ConfigError(
            f"{type(model).__name__} takes {main!r}; edgesmith reads text and image models from folders",
            hint="give the inputs with --input-shape NAME:DIMS[:DTYPE] (recipe `inputs:`)",
        )
    if tokenizer_dir is None:
        raise InputError(
            f"Transformers folder {tdir} has no tokenizer files (tokenizer.json, vocab.txt, ...)",
            hint="save the tokenizer into the folder (tokenizer.save_pretrained(folder)), or give --input-shape and .npz data",
        )
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds for an unreadable tokenizer
        raise InputError(
            f"cannot load the tokenizer in {tokenizer_dir}: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}",
            hint="re-save it with tokenizer.save_pretrained(folder)",
        ) from exc
    names = [n for n in tok.model_input_names if n in params]
    if "input_ids" not in names:
        names = ["input_ids", *names]
    return [{"name": n, "shape": ["batch", "sequence"], "dtype": "int64"} for n in names], names


def wrap_model(model: Any, names: list[str], pooling: str | None = None, normalize: bool = False, image_shape: tuple = (3, 224, 224)) -> Any:
    """A module whose forward takes ``names`` positionally (a real signature, so torch.export names the
    inputs) and returns a tuple of tensors named by ``output_names``."""
    import torch

    class TransformersFolder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.input_names = list(names)
            self.output_names: list[str] = []

        def forward(self, *args: Any) -> Any:
            kwargs = dict(zip(self.input_names, args))
            out = self.model(**kwargs, return_dict=True)
            if pooling is not None:
                emb = _pool(out[0], kwargs.get("attention_mask"), pooling)
                return torch.nn.functional.normalize(emb, p=2, dim=1) if normalize else emb
            values = (
                tuple(v for k, v in out.items() if torch.is_tensor(v) and k in self.output_names)
                if self.output_names
                else tuple(v for v in out.values() if torch.is_tensor(v))
            )
            return values[0] if len(values) == 1 else values

    TransformersFolder.forward.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] + [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    )
    wrapper = TransformersFolder()
    if pooling is not None:
        wrapper.output_names = ["sentence_embedding"]
    else:
        if names == ["pixel_values"]:
            c, h, w = image_shape
            probe = {"pixel_values": torch.zeros(2, c, h, w)}
        else:
            probe = {n: torch.ones(2, 8, dtype=torch.long) if n == "attention_mask" else torch.zeros(2, 8, dtype=torch.long) for n in names}
        with torch.no_grad():
            out = model(**probe, return_dict=True)
        wrapper.output_names = [k for k, v in out.items() if torch.is_tensor(v)]
    return wrapper


def _pool(tokens: Any, mask: Any, how: str) -> Any:
    import torch

    if how == "cls":
        return tokens[:, 0]
    m = (mask if mask is not None else torch.ones(tokens.shape[:2], dtype=torch.long)).unsqueeze(-1).to(tokens.dtype)
    if how == "max":
        return (tokens + (1.0 - m) * -1e9).max(dim=1).values
    if how == "last":
        idx = (m.squeeze(-1).sum(dim=1) - 1).clamp(min=0).long()
        return tokens[torch.arange(tokens.shape[0]), idx]
    summed, count = (tokens * m).sum(dim=1), m.sum(dim=1).clamp(min=1e-9)
    return summed / (count.sqrt() if how == "mean_sqrt_len" else count)
