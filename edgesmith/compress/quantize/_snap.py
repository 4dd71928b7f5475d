"""Keep the torch-level weight grids exact through ONNX Runtime's int8 quantizer.

``rtn``, ``gpfq`` and ``mixed_precision`` leave each layer's weights on a grid w = k·s_c (integer k,
one scale per output channel) and hand s_c to later passes as a ``WeightGrids`` record. ORT's ``quantize_static``
would re-quantize those weights with its own scale (max|w|/127) and round the b-bit levels again; this
step rewrites each weight's int8 initializer and scale to exactly k and s_c, so the artifact executes
the grid the torch pass chose, with ORT's integer kernels (QLinearConv, QGemm, MatMulInteger).

Storage: ORT's integer conv/GEMM kernels read int8 weights, so sub-8-bit levels are stored in int8
containers (the report says so, with the size). ONNX's INT4 DequantizeLinear would halve that, but
ORT does not fuse an INT4 DequantizeLinear into its integer kernels (it dequantizes to float at load).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.compress.contract import WeightGrids


def record_grid(ctx: Any, name: str, scale: Any, bits: int) -> None:
    """Per-output-channel scale of a layer's weight grid (a tensor of length out, or a scalar)."""

    ctx.records.add(WeightGrids({name: {"scale": scale.detach().reshape(-1).double().clone(), "bits": bits}}))


def snap_weights(onnx_path: Path, float_path: Path, grids: dict[str, dict], ctx: Any) -> dict[str, str]:
    """Rewrite ``<layer>.weight_quantized`` / ``_scale`` (and the int32 bias, whose scale is the input
    scale times the weight scale) of a QDQ model to the recorded grids, in place; ``float_path`` is the
    model ORT quantized. Returns, per layer, "exact" or why it was left as ORT quantized it."""
    import onnx
    from onnx import numpy_helper

    floats = {i.name: i for i in onnx.load(str(float_path)).graph.initializer}
    model = onnx.load(str(onnx_path))
    inits = {i.name: i for i in model.graph.initializer}
    arr = lambda name: numpy_helper.to_array(inits[name])  # noqa: E731
    outcome: dict[str, str] = {}
    for layer, grid in grids.items():
        q_name, s_name, z_name = f"{layer}.weight_quantized", f"{layer}.weight_scale", f"{layer}.weight_zero_point"
        if q_name not in inits or s_name not in inits or f"{layer}.weight" not in floats:
            outcome[layer] = "not quantized by ORT (kept float or excluded)"
            continue
        q, s_ort = arr(q_name), arr(s_name).astype(np.float64)
        if q.dtype != np.int8 or (z_name in inits and np.any(arr(z_name) != 0)):
            outcome[layer] = f"ORT weights are {q.dtype} with a zero point: left as ORT quantized them"
            continue
        scale = grid["scale"].numpy().astype(np.float64)
        if scale.size == 1:
            scale = np.full(q.shape[0], float(scale[0]))
        if s_ort.size == 1 and not np.allclose(scale, scale[0]):
            outcome[layer] = "ORT quantized per-tensor, the grid is per-channel: left as ORT quantized it"
            continue
        w = numpy_helper.to_array(floats[f"{layer}.weight"]).astype(np.float64).reshape(q.shape[0], -1)
        k = np.round(w / scale[:, None])
        if np.abs(k).max() > 127 or np.abs(w - k * scale[:, None]).max() > 1e-4 * scale.max():
            outcome[layer] = "its weights are not on the recorded grid (changed after the weight pass?) or do not fit int8"
            continue
        new_s = scale if s_ort.size > 1 else scale[:1]
        b_name = f"{layer}.bias_quantized"
        if b_name in inits and f"{layer}.bias" in floats:
            bs_name = f"{layer}.bias_quantized_scale"
            in_scale = arr(bs_name).astype(np.float64) / s_ort  # ORT: bias scale = input scale x weight scale
            new_bs = in_scale * new_s
            bias = numpy_helper.to_array(floats[f"{layer}.bias"]).astype(np.float64)
            inits[b_name].CopyFrom(numpy_helper.from_array(np.round(bias / new_bs).astype(np.int32), b_name))
            inits[bs_name].CopyFrom(numpy_helper.from_array(new_bs.astype(np.float32).reshape(arr(bs_name).shape), bs_name))
        inits[q_name].CopyFrom(numpy_helper.from_array(k.astype(np.int8).reshape(q.shape), q_name))
        inits[s_name].CopyFrom(numpy_helper.from_array(new_s.astype(np.float32).reshape(s_ort.shape), s_name))
        outcome[layer] = "exact"
    onnx.save(model, str(onnx_path))
    exact = sum(v == "exact" for v in outcome.values())
    bits = sorted({g["bits"] for g in grids.values()})
    ctx.note(
        f"weight grids from the torch passes kept exactly in {exact} of {len(grids)} layer(s)"
        + (
            f"; {'/'.join(map(str, bits))}-bit levels are stored in int8 (ORT's integer kernels read int8 weights; an INT4 "
            f"DequantizeLinear is not fused into them)"
            if bits and max(bits) < 8
            else ""
        )
        + "".join(f"; {n}: {why}" for n, why in outcome.items() if why != "exact")
    )
    return outcome
