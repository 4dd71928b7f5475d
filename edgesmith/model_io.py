"""Load what the user hands us: a factory (+ weights), a torch.export program, or an ONNX file.

Security: checkpoints load with ``torch.load(weights_only=True)``; a file that needs full
unpickling is refused unless the user passes ``--trust-checkpoint``. safetensors is preferred.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.machinery
import os
import pickle
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edgesmith.errors import ConfigError, InputError
from edgesmith.hf import load_folder

ModelKind = Literal["torch", "pt2", "onnx", "hf", "torchscript"]

TORCHSCRIPT_SUFFIXES = (".ts", ".torchscript", ".jit")


# ONNX metadata key naming the pass that produced a model (backends report where INT8 came from)
PRODUCER_KEY = "edgesmith.producer"


def model_kind(source: str, base_dir: Path | None = None) -> ModelKind:
    if source.endswith(".onnx"):
        return "onnx"
    if source.endswith(".pt2"):
        return "pt2"
    if source.endswith(TORCHSCRIPT_SUFFIXES):
        return "torchscript"
    if ":" in source and not source.startswith(("/", ".")) and not (len(source) > 1 and source[1] == ":"):
        return "torch"
    path = resolve(source, base_dir or Path.cwd())
    suffix = path.suffix.lower()
    if path.is_dir() or source.endswith(("/", os.sep)):
        return "hf"
    if suffix in (".pt", ".pth"):
        if not path.exists():
            raise InputError(f"model file not found: {path}", hint="check the path")
        if _is_torchscript(path):
            return "torchscript"
    if suffix in (".pt", ".pth", ".bin", ".safetensors", ".ckpt"):
        raise ConfigError(
            f"{source} holds weights, not a model: the architecture is missing",
            hint="give the factory that builds the model with -w/--weights (package.module:factory -w FILE), "
            "a Transformers folder, a TorchScript archive, a .pt2 program or an .onnx file",
        )
    if suffix in _FOREIGN:
        raise ConfigError(
            f"{source} is a {_FOREIGN[suffix]} model: edgesmith takes PyTorch and ONNX models",
            hint="convert it to ONNX first (e.g. tf2onnx for TensorFlow/Keras), then give the .onnx file",
        )
    if suffix in (".pkl", ".pickle", ".joblib"):
        raise ConfigError(
            f"{source} is a pickle: loading it would run arbitrary code, so it is refused",
            hint="save the model as a Transformers folder, TorchScript, .pt2, or a factory plus safetensors weights",
        )
    if suffix:
        raise ConfigError(
            f"cannot tell what model {source!r} is",
            hint="give a Transformers folder, package.module:factory, a torch.export program (.pt2), a TorchScript archive (.ts) or an ONNX file (.onnx)",
        )
    return "hf"  # NOTE: a bare path is a model folder; loading says so if it is missing or not one


_FOREIGN = {
    ".tflite": "TensorFlow Lite",
    ".h5": "Keras",
    ".keras": "Keras",
    ".pb": "TensorFlow",
    ".mlmodel": "Core ML",
    ".mlpackage": "Core ML",
    ".engine": "TensorRT engine",
    ".xml": "OpenVINO IR",
    ".caffemodel": "Caffe",
    ".gguf": "GGUF",
}


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with a ``code/`` folder (a state dict saved by torch.save has none)."""

    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n for n in z.namelist()[:200])
    except (OSError, zipfile.BadZipFile):
        return False


def hf_folder(source: str, base_dir: Path) -> Path | None:
    """The folder, when ``source`` is a Transformers folder."""
    try:
        if model_kind(source, base_dir) != "hf":
            return None
    except ConfigError:
        return None
    path = resolve(source, base_dir)
    return path if path.is_dir() else None


def import_object(ref: str, what: str, base_dir: Path | None = None) -> Any:
    """``package.module:attr`` -> the object. The current directory (as with `python -m`) and the
    recipe's folder are importable."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{what} {ref!r} is not of the form package.module:name", hint="e.g. edgesmith.zoo:digits_cnn")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    if base_dir is not None and str(base_dir) not in sys.path:
        sys.path.insert(1, str(base_dir))
    importlib.invalidate_caches()  # a module file written since the last import is seen
    _forget_if_moved(module_name.split(".")[0])
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import {module_name!r} for {what} {ref!r}: {exc}", hint="check the module path, or run from the directory that holds it"
        ) from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{module_name!r} has no attribute {part!r} ({what} {ref!r})", hint="check the name after the colon")
        obj = getattr(obj, part)
    return obj


def _forget_if_moved(top: str) -> None:
    """A user's module imported earlier in this process from another folder (two recipes' folders
    each with a ``mydata.py``) is forgotten, so the one the path finds now is imported, not the stale
    one. Installed packages are left alone."""
    cached = sys.modules.get(top)
    cached_file = getattr(cached, "__file__", None)
    if cached is None or not cached_file:
        return
    here = Path(cached_file).resolve()
    installed = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, Path(__file__).parent)}
    if any(here.is_relative_to(root) for root in installed):
        return
    spec = importlib.machinery.PathFinder.find_spec(top, sys.path)
    if spec is None or not spec.origin or Path(spec.origin).resolve() == here:
        return
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]


def _require_file(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{what} not found: {path}", hint="check the path (relative paths resolve against the recipe's folder)")
    if not path.is_file():
        raise InputError(f"{what} is not a file: {path}", hint="give the path of a file")


def load_state_dict(path: Path, trust_checkpoint: bool) -> dict:
    """safetensors, or a torch checkpoint restricted to tensors unless explicitly trusted."""
    import torch

    _require_file(path, "weights file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise InputError(f"cannot read safetensors file {path}: {exc}", hint="the file may be truncated; re-save it") from exc
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch.save writes a zip, or a pickle (PROTO first)
        kind = "an ONNX model" if path.suffix == ".onnx" else "neither a zip archive nor a pickle"
        raise InputError(
            f"{path.name} is not a torch checkpoint: it is {kind}", hint="give a .safetensors file or what torch.save(model.state_dict(), ...) wrote"
        )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust_checkpoint:
            raise InputError(
                f"checkpoint {path.name} needs full unpickling (it holds Python objects, not only tensors); refused because unpickling can run arbitrary code",
                hint="re-save it as a state_dict or safetensors, or pass --trust-checkpoint if you trust its source",
            ) from exc
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InputError(
            f"cannot read checkpoint {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}", hint="the file may be truncated or not a torch checkpoint"
        ) from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise InputError(f"checkpoint {path.name} holds a {type(obj).__name__}, not a state dict", hint="save model.state_dict()")
    return obj


@dataclass
class LoadedModel:
    kind: ModelKind
    module: Any = None  # torch.nn.Module for torch and pt2 inputs
    program: Any = None  # torch.export.ExportedProgram for pt2 inputs
    onnx_path: Path | None = None
    default_inputs: list | None = None  # input spec the factory or file declares
    tokenizer_dir: Path | None = None  # a Transformers folder's tokenizer (text data is tokenized with it)
    labels: dict[str, int] | None = None  # class names -> indices (a Transformers config's id2label)
    description: str = ""


def load_model(spec: Any, base_dir: Path, trust_checkpoint: bool = False) -> LoadedModel:
    """``spec`` is the recipe's ModelSpec."""
    kind = model_kind(spec.source, base_dir)
    if kind == "hf":
        if spec.weights:
            raise ConfigError("a Transformers folder carries its own weights; --weights does not apply", hint="drop -w/--weights")
        path = resolve(spec.source, base_dir)
        if not path.is_dir():
            raise InputError(f"model folder not found: {path}", hint="give the folder written by save_pretrained")
        if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
            raise InputError(
                f"{path} is a folder without config.json: not a Transformers model",
                hint="give a folder written by model.save_pretrained (config.json + model.safetensors + tokenizer)",
            )
        hf = load_folder(path)
        return LoadedModel("hf", module=hf.module, default_inputs=hf.input_specs, tokenizer_dir=hf.tokenizer_dir, labels=hf.labels, description=hf.description)
    if kind == "torchscript":
        import torch

        path = resolve(spec.source, base_dir)
        _require_file(path, "TorchScript archive")
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - torch.jit raises RuntimeError and others for a bad archive
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise InputError(
                f"cannot load TorchScript archive {path}: {first}", hint="save it with torch.jit.save(torch.jit.script(model), 'model.ts')"
            ) from exc
        return LoadedModel("torchscript", module=module.eval(), description="TorchScript archive")
    if kind == "onnx":
        path = resolve(spec.source, base_dir)
        _require_file(path, "ONNX model")
        specs = onnx_input_specs(path)
        return LoadedModel("onnx", onnx_path=self_contained(path), default_inputs=specs)
    if kind == "pt2":
        import torch

        path = resolve(spec.source, base_dir)
        _require_file(path, "torch.export program")
        try:
            program = torch.export.load(str(path))
        except Exception as exc:
            raise InputError(
                f"cannot load torch.export program {path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                hint="save it with torch.export.save(program, 'model.pt2')",
            ) from exc
        return LoadedModel("pt2", module=program.module(), program=program, default_inputs=_pt2_input_specs(program))
    factory = import_object(spec.source, "model factory", base_dir)
    if not callable(factory):
        raise ConfigError(f"model factory {spec.source!r} is not callable", hint="point at a function or class that returns an nn.Module")
    try:
        module = factory(**spec.kwargs)
    except TypeError as exc:
        raise ConfigError(f"model factory {spec.source!r} rejected its arguments: {exc}", hint="check `model.kwargs` in the recipe") from exc
    except Exception as exc:
        raise InputError(
            f"model factory {spec.source!r} raised {type(exc).__name__}: {str(exc).strip()[:200]}",
            hint="run the factory on its own to debug it; EDGESMITH_DEBUG=1 shows the traceback",
        ) from exc
    import torch

    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"model factory {spec.source!r} returned {type(module).__name__}, not a torch.nn.Module", hint="return the model instance")
    if spec.weights:
        state = load_state_dict(resolve(spec.weights, base_dir), trust_checkpoint)
        try:
            result = module.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shapes that do not fit: the checkpoint's problem, not ours
            first = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            raise InputError(f"weights do not fit the model: {first[:240]}", hint="the checkpoint is for another architecture or factory arguments") from exc
        if result.missing_keys or result.unexpected_keys:
            raise InputError(
                f"weights do not match the model: {len(result.missing_keys)} missing key(s) {result.missing_keys[:3]}, "
                f"{len(result.unexpected_keys)} unexpected {result.unexpected_keys[:3]}",
                hint="the checkpoint is for another architecture or factory arguments",
            )
    return LoadedModel("torch", module=module.eval(), default_inputs=getattr(factory, "input_spec", None))


def resolve(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


_ONNX_DTYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 2: "uint8", 9: "bool"}


def onnx_input_specs(path: Path) -> list[dict]:
    """Input names/shapes/dtypes of an ONNX file; refuses files that are not valid ONNX."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path} is not a valid ONNX model: {first[:200]}", hint="the file may be truncated or corrupt; re-export it") from exc
    _check_external_data(model, path)
    try:
        onnx.checker.check_model(str(path))  # NOTE: by path: external data is read from the model's folder (in memory: from the cwd)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path} is not a valid ONNX model: {first[:200]}", hint="the file may be truncated or corrupt; re-export it") from exc
    _check_graph_ends(model, path)
    inits = {i.name for i in model.graph.initializer}
    specs = []
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        tt = inp.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "dim") for d in tt.shape.dim]
        if not inp.type.HasField("tensor_type") or tt.elem_type not in _ONNX_DTYPES:
            raise InputError(
                f"{path}: input {inp.name!r} is not a tensor of a supported type",
                hint=f"supported input types: {', '.join(sorted(set(_ONNX_DTYPES.values())))}",
            )
        if not tt.HasField("shape"):
            raise InputError(f"{path}: input {inp.name!r} has no shape", hint="export with input shapes (a named first dimension for the batch)")
        bad = [d for d in shape if isinstance(d, int) and d < 1]
        if bad:
            raise InputError(
                f"{path}: input {inp.name!r} has shape {shape}: a dimension of size {bad[0]}",
                hint="re-export with positive sizes (or a name for a dynamic dimension)",
            )
        specs.append({"name": inp.name, "shape": shape, "dtype": _ONNX_DTYPES[tt.elem_type]})
    if not specs:
        raise InputError(f"{path} has no inputs: there is nothing to feed it", hint="give a model that takes at least one input tensor")
    return specs


def _check_graph_ends(model: Any, path: Path) -> None:
    """A graph that declares no outputs, or an opset newer than the installed ONNX knows, is refused here, by name:
    past this point a runtime or a quantizer fails on it with an error about its own temporary files."""
    import onnx

    if not model.graph.output:
        raise InputError(f"{path} declares no graph outputs: there is nothing to compute", hint="re-export the model with its outputs")
    newest = onnx.defs.onnx_opset_version()
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and entry.version > newest:
            raise InputError(
                f"{path} uses ONNX opset {entry.version}; the installed onnx {onnx.__version__} knows opsets up to {newest}",
                hint="re-export with an older opset (edgesmith export --opset 18), or upgrade onnx and onnxruntime",
            )


def _pt2_input_specs(program: Any) -> list[dict] | None:
    try:
        specs = []
        for node in program.graph.find_nodes(op="placeholder"):
            if node.name in program.graph_signature.user_inputs:
                val = node.meta.get("val")
                shape = ["batch" if i == 0 and not str(d).isdigit() else (int(d) if str(d).isdigit() else str(d)) for i, d in enumerate(val.shape)]
                specs.append({"name": node.name, "shape": shape, "dtype": str(val.dtype).removeprefix("torch.")})
        return specs or None
    except Exception:  # NOTE: best effort; the recipe's `inputs:` covers programs we cannot read
        return None


def _check_external_data(model: Any, path: Path) -> list[Path]:
    """The external-data files the model's tensors name; refused when one points outside the model's folder (path
    traversal) or is missing (the exporter's ``model.onnx.data`` left behind when the model was copied)."""
    import onnx

    root, files = path.parent.resolve(), []
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (root / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(root):
            raise InputError(
                f"{path.name}: tensor {tensor.name!r} points its external data at {location!r}, outside the model's folder",
                hint="refusing path traversal; keep external data files next to the model",
            )
        if not target.is_file():
            raise InputError(
                f"{path.name} keeps its weights in the external data file {location!r}, which is not next to it",
                hint=f"copy {location} into {path.parent} with the model (exporters write it beside model.onnx)",
            )
        files.append(target) if target not in files else None
    return files


ONNX_PROTO_LIMIT = 2**31 - 2**26  # protobuf's 2 GB, less room for the graph itself


def self_contained(path: Path) -> Path:
    """``path``, or where its weights live in external data files, one file holding them (a temporary copy, removed
    at exit): every copy, optimisation and hash downstream then sees the weights (ONNX Runtime's optimised model
    kept references to a data file it did not write beside it). Models past protobuf's 2 GB are refused."""
    import onnx

    files = _check_external_data(onnx.load(str(path), load_external_data=False), path)
    if not files:
        return path
    size = path.stat().st_size + sum(f.stat().st_size for f in files)
    if size > ONNX_PROTO_LIMIT:
        raise InputError(
            f"{path.name} and its external data hold {size / 2**30:.1f} GB: edgesmith takes ONNX models up to 2 GB",
            hint="a model this size is not an edge model; compress it before export (or export a smaller variant)",
        )
    folder, owner = tempfile.mkdtemp(prefix="edgesmith-onnx-"), os.getpid()
    atexit.register(lambda: shutil.rmtree(folder, True) if os.getpid() == owner else None)  # NOTE: not by a forked trial worker
    copy = Path(folder) / path.name
    onnx.save(onnx.load(str(path)), str(copy))
    return copy


def check_specs_against_onnx(specs: list, onnx_inputs: list[dict]) -> None:
    """Input specs (recipe or flags) must name the ONNX model's inputs and fit their fixed dimensions."""

    by_name = {i["name"]: i for i in onnx_inputs}
    for s in specs:
        if s.name not in by_name:
            raise InputError(f"input {s.name!r} is not an input of the ONNX model (it has {sorted(by_name)})", hint="use the ONNX model's input names")
        want = by_name[s.name]["shape"]
        fixed_mismatch = len(want) != len(s.shape) or any(isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(s.shape, want))
        if fixed_mismatch:
            raise InputError(
                f"input spec {s.name}{list(s.shape)} does not fit the ONNX model's {s.name}{want}", hint="fix `inputs:` (or --input-shape) to the model's shape"
            )


def model_defaults(model: str) -> dict:
    """Data and metric a zoo factory declares (``factory.defaults``), so its demo needs no flags."""
    if ":" not in model or model.endswith((".onnx", ".pt2")):
        return {}
    try:
        return dict(getattr(import_object(model, "model factory"), "defaults", {}) or {})
    except Exception:  # noqa: BLE001 - the model is loaded (and its errors reported) later
        return {}
