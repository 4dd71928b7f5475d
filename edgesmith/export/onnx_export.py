"""Export a torch model (or torch.export program) to ONNX with a dynamic batch, then check it.

The dynamo-based exporter (``torch.onnx.export(..., dynamo=True)``, opset 18 by default) is used;
``exporter: torchscript`` selects the legacy tracer for models dynamo cannot capture. After
export: ``onnx.checker``, shape inference, and a parity check of ONNX Runtime against torch on
real inputs (stated tolerances; a failure says by how much).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith._lazy import require
from edgesmith.data.synthetic import EXAMPLE_BATCH, example_inputs  # noqa: F401 - re-exported
from edgesmith.errors import ExportError, InputError, refused_data
from edgesmith.metrics import cosine
from edgesmith.runtime.custom_ops import apply_registrations


def reraise_interrupt(exc: BaseException) -> None:
    """Ctrl-C or SIGTERM that torch wrapped into an exporter error (torch.export catches and re-raises) is an
    interrupt, not a failed export: raise it as it was, so the command exits 130/143 rather than 2."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, KeyboardInterrupt):
            raise cause
        cause = cause.__cause__ or cause.__context__


def probe_forward(module: Any, input_specs: Sequence[Any]) -> Any:
    """Run the model once on inputs of the spec's shape; a mismatch becomes a clear InputError."""
    import torch

    feeds = example_inputs(input_specs)
    args = tuple(torch.from_numpy(feeds[s.name]) for s in input_specs)
    try:
        with torch.no_grad():
            out = module(*args)
    except Exception as exc:
        reraise_interrupt(exc)
        shapes = ", ".join(f"{s.name}{list(s.shape)}" for s in input_specs)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"input spec {shapes} does not fit the model: {type(exc).__name__}: {first[:200]}",
            hint="fix `inputs:` in the recipe (or --input-shape) to the shape the model expects",
        ) from exc
    if not _has_tensor(out, torch.Tensor):
        raise InputError(
            f"the model returned {type(out).__name__} with no tensor in it: there is nothing to export",
            hint="return the output tensor(s) from forward (a tensor, a tuple or a dict of tensors)",
        )
    return out


def _has_tensor(out: Any, tensor: type) -> bool:
    if isinstance(out, tensor):
        return True
    if isinstance(out, dict):
        return any(_has_tensor(v, tensor) for v in out.values())
    return isinstance(out, (tuple, list)) and any(_has_tensor(v, tensor) for v in out)


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter logs progress and library warnings (e.g. torchvision ops it skips); keep them out of the CLI."""

    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


def _output_names(sample_out: Any, module: Any = None, given: Sequence[str] | None = None) -> list[str]:
    """Output names: the recipe's (``outputs:``), else the module's own (an ``output_names`` attribute, dict
    keys, namedtuple fields), else output_0.. (one output: ``output``)."""
    n = len(sample_out) if isinstance(sample_out, (dict, tuple, list)) else 1
    names = list(given or []) or list(getattr(module, "output_names", None) or [])
    if not names and isinstance(sample_out, dict):
        names = [str(k) for k in sample_out]
    if not names and hasattr(sample_out, "_fields"):
        names = list(sample_out._fields)
    if names:
        if len(names) != n or len(set(names)) != n:
            raise InputError(
                f"output names {names} do not fit the model's {n} output(s)", hint="give one distinct name per output (recipe `outputs:` or --output-name)"
            )
        return [str(x) for x in names]
    return [f"output_{i}" for i in range(n)] if isinstance(sample_out, (tuple, list)) else ["output"]


def export_onnx(
    module: Any,
    input_specs: Sequence[Any],
    out_path: Path,
    *,
    opset: int = 18,
    exporter: str = "dynamo",
    program: Any = None,
    output_names: Sequence[str] | None = None,
) -> Path:
    """Write ``out_path``; returns it. ``program`` (a torch.export.ExportedProgram) is exported as is."""
    import onnx
    import torch

    if exporter == "dynamo" and isinstance(module, torch.jit.ScriptModule):
        exporter = "torchscript"  # NOTE: torch.export cannot trace a TorchScript archive; the TorchScript exporter can
    if exporter == "dynamo":
        require("onnxscript")  # the torch.export-based exporter needs it; say so instead of failing deep inside
    if exporter == "torchscript" and opset > 20:
        raise ExportError(f"the torchscript exporter writes opsets up to 20, not {opset}", hint="use `export: {exporter: dynamo}` or an opset <= 20")
    sample_out = probe_forward(module, input_specs)
    feeds = example_inputs(input_specs)
    args = tuple(torch.from_numpy(feeds[s.name]) for s in input_specs)
    names = [s.name for s in input_specs]
    outputs = _output_names(sample_out, module, output_names)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), torch.no_grad(), _quiet_exporter():
            if exporter == "torchscript":
                axes = {s.name: {i: str(d) for i, d in enumerate(s.shape) if not isinstance(d, int)} for s in input_specs}
                torch.onnx.export(module, args, str(out_path), input_names=names, output_names=outputs, dynamic_axes=axes, opset_version=opset, dynamo=False)
            else:
                dyn = None
                if program is None:
                    dims: dict[str, Any] = {}
                    dyn = tuple(
                        {i: dims.setdefault(str(d), torch.export.Dim(str(d).replace("-", "_"))) for i, d in enumerate(s.shape) if not isinstance(d, int)}
                        for s in input_specs
                    )
                torch.onnx.export(
                    program if program is not None else module,
                    args,
                    str(out_path),
                    input_names=names,
                    output_names=outputs,
                    dynamic_shapes=dyn,
                    opset_version=opset,
                    dynamo=True,
                    external_data=False,
                    optimize=True,
                )
    except Exception as exc:
        reraise_interrupt(exc)
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        other = "torchscript" if exporter == "dynamo" else "dynamo"
        raise ExportError(
            f"torch -> ONNX export failed ({exporter} exporter): {first[:240]}",
            hint=f"try `export: {{exporter: {other}}}` in the recipe, or simplify the unsupported op",
        ) from exc
    _drop_initializer_value_info(out_path)
    _name_dims(out_path, input_specs)
    try:
        onnx.checker.check_model(str(out_path), full_check=True)
        # NOTE: store inferred shapes in the file; quantizers and runtimes read them
        onnx.shape_inference.infer_shapes_path(str(out_path), str(out_path), check_type=True)
    except Exception as exc:
        raise ExportError(
            f"exported ONNX fails onnx.checker / shape inference: {str(exc).splitlines()[0][:240]}", hint="report the op; try another opset"
        ) from exc
    written = next((o.version for o in onnx.load(str(out_path), load_external_data=False).opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:  # NOTE: the dynamo exporter writes its own minimum (18) when asked for less
        out_path.unlink(missing_ok=True)
        raise ExportError(
            f"asked for ONNX opset {opset}, the {exporter} exporter wrote opset {written}",
            hint=f"request opset {written}" + (" or use `export: {exporter: torchscript}` for older opsets" if exporter == "dynamo" else ""),
        )
    return out_path


def _name_dims(path: Path, input_specs: Sequence[Any]) -> None:
    """Dynamic dimensions carry the spec's names (``batch``, ``sequence``) in inputs, outputs and value_info,
    not the exporter's symbols (``s85``, a torch.export program keeps its own)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    rename: dict[str, str] = {}
    by_name = {s.name: s for s in input_specs}
    for inp in model.graph.input:
        spec = by_name.get(inp.name)
        if spec is None:
            continue
        for d, want in zip(inp.type.tensor_type.shape.dim, spec.shape):
            if d.dim_param and isinstance(want, str) and d.dim_param != want and rename.setdefault(d.dim_param, want) == want:
                pass
    rename = {k: v for k, v in rename.items() if k not in set(rename.values())}
    if not rename:
        return
    for v in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for d in v.type.tensor_type.shape.dim:
            if d.dim_param in rename:
                d.dim_param = rename[d.dim_param]
    onnx.save(model, str(path))


def _drop_initializer_value_info(path: Path) -> None:
    """The dynamo exporter records value_info for weights too; a quantizer that transposes a weight (a Gemm
    with transB) then contradicts it and ONNX Runtime's shape inference refuses the model. An initializer
    carries its own shape: its value_info entry is dropped."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    keep = [v for v in model.graph.value_info if v.name not in inits]
    if len(keep) != len(model.graph.value_info):
        del model.graph.value_info[:]
        model.graph.value_info.extend(keep)
        onnx.save(model, str(path))


@dataclass
class ParityResult:
    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    samples: int
    worst_output: str
    min_cosine: float = 1.0  # worst per-sample cosine across outputs

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.atol or self.max_rel <= self.rtol

    def describe(self) -> str:
        return (
            f"max |torch - onnx| = {self.max_abs:.3g} (atol {self.atol:g}), max relative {self.max_rel:.3g} "
            f"(rtol {self.rtol:g}) on {self.samples} samples, output {self.worst_output!r}"
        )


def check_parity(module: Any, onnx_path: Path, feeds: dict[str, np.ndarray], input_specs: Sequence[Any], atol: float, rtol: float) -> ParityResult:
    """ONNX Runtime (no graph optimisation, exact kernels) against torch on the same real inputs."""
    ort = require("onnxruntime")
    import torch

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL

    apply_registrations("onnxruntime", so, onnx_path)  # a model with custom ops is checked with their registration
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    try:
        got = sess.run(None, feeds)
    except Exception as exc:
        refused = refused_data(exc)
        if refused is not None:
            raise refused from exc
        raise
    with torch.no_grad():
        ref = module(*(torch.from_numpy(feeds[s.name]) for s in input_specs))
    if isinstance(ref, dict):
        ref = list(ref.values())
    ref = [r.detach().numpy() for r in (ref if isinstance(ref, (tuple, list)) else [ref])]

    worst = (0.0, 0.0, "")
    min_cos = 1.0
    for out, r, g in zip(sess.get_outputs(), ref, got):
        if r.shape != g.shape:
            raise ExportError(
                f"ONNX output {out.name!r} has shape {list(g.shape)}, torch gives {list(r.shape)}", hint="check dynamic dimensions in the input spec"
            )
        diff = np.abs(r.astype(np.float64) - g.astype(np.float64))
        max_abs = float(diff.max()) if diff.size else 0.0
        max_rel = float((diff / (np.abs(r).max() + 1e-12)).max()) if diff.size else 0.0
        if max_abs >= worst[0]:
            worst = (max_abs, max_rel, out.name)
        if r.ndim:
            min_cos = min(min_cos, cosine(r, g))
    return ParityResult(worst[0], worst[1], atol, rtol, len(next(iter(feeds.values()))), worst[2], min_cos)
