"""``int4_weights``: weights stored as 4-bit integers, computed in float (ONNX INT4 + DequantizeLinear).

For a model whose size matters more than its speed (a flash budget, an over-the-air update): every weight
of a Conv, Gemm, MatMul, Gather or recurrent (LSTM/GRU/RNN) layer, also when it reaches the layer through
slices, transposes or concatenations (how the exporter lays out an LSTM's gates), becomes an INT4 tensor
with one float scale per group of ``group_size`` consecutive weights of a row (per row when the row does
not divide), and a DequantizeLinear (opset 21) restores it under its old name at run time; activations
stay float. About 4.25 bits a weight at the default 128: 7.5x smaller than float32 for the weights.

Weights a torch pass left on a 2-4 bit per-output-channel grid (``rtn``, ``gpfq``, ``qat``,
``mixed_precision``: the ``WeightGrids`` record) are stored on that grid exactly; the rest are rounded to
nearest (symmetric, levels -7..7). Small tensors (``min_size``), biases and norms stay float. ONNX
Runtime and OpenVINO both read it (OpenVINO keeps the weights compressed in memory); neither runs
integer kernels on it, so expect float speed, not INT8's.

Recipe::

    passes:
      - type: rtn            # optional: a torch-level grid (or gpfq / qat at 4 bits)
        bits: 4
      - type: int4_weights
        group_size: 64
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.compress.contract import WeightGrids
from edgesmith.compress.registry import PassContext, PassInfo
from edgesmith.errors import InputError

# the inputs of each op that are weights, and ops a weight may pass through on its way to one
WEIGHT_INPUTS = {"Conv": (1,), "ConvTranspose": (1,), "Gemm": (0, 1), "MatMul": (0, 1), "Gather": (0,), "LSTM": (1, 2), "GRU": (1, 2), "RNN": (1, 2)}
LAYOUT_OPS = {"Slice", "Transpose", "Concat", "Reshape", "Split", "Squeeze", "Unsqueeze", "Identity", "Cast"}
OPSET = 21  # INT4 and blocked scales in DequantizeLinear
LEVEL = 7  # symmetric 4-bit levels -7..7 (-8 left unused, as the torch grids do)


@dataclass(frozen=True)
class Int4WeightsConfig:
    group_size: int | None = 128  # weights per scale along the reduction axis; None: one scale per output channel
    min_size: int = 1024  # tensors with fewer elements stay float
    exclude: tuple[str, ...] = ()  # initializer names (or prefixes) kept float

    def __post_init__(self) -> None:
        if self.group_size is not None and self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (or null for one scale per output channel), got {self.group_size}")
        if self.min_size < 1:
            raise ValueError(f"min_size must be >= 1, got {self.min_size}")


@dataclass(frozen=True)
class Layout:
    """Where a weight's scales run: ``out`` is its output-channel axis, ``reduce`` the axis it is summed over."""

    out: int
    reduce: int | None  # None: no group along a single axis (a conv's kernel spans several)


def _role(node: Any, index: int, shape: tuple[int, ...]) -> Layout | None:
    op, nd = node.op_type, len(shape)
    if index not in WEIGHT_INPUTS.get(op, ()):
        return None
    if op == "Conv":
        return Layout(0, None)
    if op == "ConvTranspose":
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        return Layout(1, None) if group == 1 else None
    if op == "Gemm":
        trans = next((a.i for a in node.attribute if a.name == ("transB" if index == 1 else "transA")), 0)
        return Layout(0, 1) if (index == 1) == bool(trans) else Layout(1, 0)
    if op == "MatMul":
        return Layout(nd - 1, nd - 2) if index == 1 else Layout(nd - 2, nd - 1)
    if op == "Gather":
        return Layout(0, 1) if nd == 2 else None
    return Layout(1, 2) if nd == 3 else None  # LSTM/GRU/RNN: [directions, gates x hidden, inputs]


def weight_layouts(model: Any, min_size: int, exclude: tuple[str, ...] = ()) -> dict[str, Layout]:
    """Float initializers of >= 2 dimensions and ``min_size`` elements that only ever reach weight inputs,
    with their layout; a weight that reaches its layer through slices or transposes (an exporter's LSTM
    gates) is grouped along its last axis, as torch stores a layer's rows."""
    from onnx import TensorProto

    consumers: dict[str, list[tuple[Any, int]]] = {}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, i))
    outputs = {o.name for o in model.graph.output}

    def reaches_weights(name: str, depth: int) -> bool:
        uses = consumers.get(name, [])
        if not uses or name in outputs or depth > 8:
            return False
        return all(
            (n.op_type in LAYOUT_OPS and all(reaches_weights(o, depth + 1) for o in n.output)) or (n.op_type in WEIGHT_INPUTS and i in WEIGHT_INPUTS[n.op_type])
            for n, i in uses
        )

    found: dict[str, Layout] = {}
    for init in model.graph.initializer:
        shape = tuple(init.dims)
        if init.data_type != TensorProto.FLOAT or len(shape) < 2 or int(np.prod(shape)) < min_size:
            continue
        if any(init.name == e or init.name.startswith(e + ".") for e in exclude):
            continue
        uses = consumers.get(init.name, [])
        roles = {_role(n, i, shape) for n, i in uses}
        if len(roles) == 1 and None not in roles and init.name not in outputs:
            found[init.name] = roles.pop()  # type: ignore[assignment]
        elif uses and all(n.op_type in LAYOUT_OPS for n, _ in uses) and reaches_weights(init.name, 0):
            found[init.name] = Layout(0, len(shape) - 1)
    return found


def quantize(w: np.ndarray, layout: Layout, group: int | None, grid_scale: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, dict, str]:
    """INT4 levels of ``w``, their scales and the DequantizeLinear attributes; the torch pass's grid when it fits."""
    x = w.astype(np.float64)
    if grid_scale is not None and grid_scale.size in (1, w.shape[layout.out]):
        s = np.broadcast_to(grid_scale.astype(np.float64).reshape(-1), (w.shape[layout.out],))
        bs = s.reshape([-1 if a == layout.out else 1 for a in range(w.ndim)])
        k = np.round(x / bs)
        if np.abs(k).max() <= LEVEL and np.abs(x - k * bs).max() <= 1e-4 * max(float(s.max()), 1e-12):
            return k.astype(np.int8), s.astype(np.float32), {"axis": layout.out}, "grid"
    ax = layout.reduce
    if group is None or ax is None or w.shape[ax] % group or w.shape[ax] <= group:
        others = tuple(a for a in range(w.ndim) if a != layout.out)
        s = np.abs(x).max(axis=others) / LEVEL
        s = np.where(s > 0, s, 1.0)
        k = np.clip(np.round(x / s.reshape([-1 if a == layout.out else 1 for a in range(w.ndim)])), -LEVEL, LEVEL)
        return k.astype(np.int8), s.astype(np.float32), {"axis": layout.out}, "rtn"
    moved = np.moveaxis(x, ax, -1)
    blocks = moved.reshape(*moved.shape[:-1], -1, group)
    s = np.abs(blocks).max(axis=-1) / LEVEL
    s = np.where(s > 0, s, 1.0)
    k = np.clip(np.round(blocks / s[..., None]), -LEVEL, LEVEL).reshape(moved.shape)
    return np.moveaxis(k, -1, ax).astype(np.int8), np.moveaxis(s, -1, ax).astype(np.float32), {"axis": ax, "block_size": group}, "rtn"


def _opset21(model: Any) -> Any:
    from onnx import version_converter

    default = next((o for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if default is not None and default.version >= OPSET:
        return model
    try:
        converted = version_converter.convert_version(model, OPSET)
    except Exception as exc:
        raise InputError(
            f"int4_weights: the model could not be converted to ONNX opset {OPSET} (INT4 needs it): {str(exc).splitlines()[0]}",
            hint="export with opset 21 (recipe: export.opset), or use ptq_int8 / dynamic_int8 instead",
        ) from exc
    converted.ir_version = max(converted.ir_version, 10)
    return converted


def apply(onnx_path: Path, cfg: Int4WeightsConfig, ctx: PassContext) -> Path:
    import ml_dtypes
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(onnx_path))
    layouts = weight_layouts(model, cfg.min_size, cfg.exclude)
    if not layouts:
        raise InputError(
            f"int4_weights: no weight tensor of >= {cfg.min_size} elements feeds a Conv, Gemm, MatMul, Gather or recurrent layer",
            hint="lower min_size, or drop the pass: there is nothing to store in 4 bits",
        )
    model = _opset21(model)
    grids_rec = ctx.records.get(WeightGrids)
    grids = {f"{layer}.weight": g for layer, g in (grids_rec.entries.items() if grids_rec else []) if int(g["bits"]) <= 4}
    inits = {i.name: i for i in model.graph.initializer}
    kept, new_nodes, before, after = {"grid": 0, "rtn": 0}, [], 0, 0
    for name, layout in layouts.items():
        w = numpy_helper.to_array(inits[name])
        grid = grids.get(name)
        k, s, attrs, how = quantize(w, layout, cfg.group_size, grid["scale"].numpy() if grid is not None else None)
        kept[how] += 1
        q = numpy_helper.from_array(k.astype(ml_dtypes.int4), f"{name}.int4")  # packed two a byte
        model.graph.initializer.remove(inits[name])
        model.graph.initializer.extend([q, numpy_helper.from_array(s, f"{name}.int4_scale")])
        new_nodes.append(helper.make_node("DequantizeLinear", [q.name, f"{name}.int4_scale"], [name], name=f"{name}.int4_dq", **attrs))
        before += w.nbytes
        after += (k.size + 1) // 2 + s.nbytes
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes + nodes)
    out = ctx.work_dir / "model.int4.onnx"
    onnx.save(model, str(out))
    ctx.details["int4_weights"] = {"tensors": len(layouts), "on_torch_grid": kept["grid"], "weight_bytes": [before, after]}
    group = f"groups of {cfg.group_size} along the reduction axis, convolutions per output channel" if cfg.group_size else "one scale per output channel"
    ctx.note(
        f"int4_weights: {len(layouts)} weight tensor(s) stored in 4 bits ({group}; {kept['grid']} on the torch pass's grid, "
        f"{kept['rtn']} rounded to nearest), {before / 1e6:.2f} -> {after / 1e6:.2f} MB of weights; compute stays float"
    )
    return out


PASS = PassInfo(
    name="int4_weights",
    stage="onnx",
    config=Int4WeightsConfig,
    apply=apply,
    summary="weights stored as INT4 (ONNX DequantizeLinear, groups of 128) for size, float compute; keeps a torch pass's 4-bit grid",
    precision="int4-weights",
    float_graph=True,
    consumes=(WeightGrids,),
)
