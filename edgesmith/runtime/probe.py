"""``edgesmith profiles init``: write a profile for this machine from what it is and a short benchmark.

The benchmark quantizes a small convolutional network (ResNet-stage shapes, built with onnx.helper, no
torch) with uint8 and with int8 activations and times both against FP32 on ONNX Runtime, interleaved.
uint8 stays the default unless int8 is clearly faster (by more than ``SWITCH_MARGIN``): on this CPU the
probe ran both at 3.3x FP32 while ResNet-18 itself ran uint8 at 2.7x and int8 at 0.81x, so the probe
cannot see everything a whole network does; the notes record what it measured.
"""

from __future__ import annotations

import os
import platform
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.runtime.bench import time_interleaved
from edgesmith.runtime.onnxruntime import OrtSession

PROBE_C, PROBE_HW = 64, 56
SWITCH_MARGIN = 1.10
FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_int8", "asimd", "asimddp", "i8mm")


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return [f for f in FLAGS_OF_INTEREST if f in flags]


def _conv_net(path: Path, seed: int = 0) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    # NOTE: ResNet-stage shapes (64-128 channels at 56x56): a tiny probe net picked int8 activations here,
    # the opposite of ResNet-18 itself (u8 2.7x vs s8 0.81x FP32), so the probe must look like real work
    inits, nodes, cin, x = [], [], 64, "input"
    for i, (cout, stride) in enumerate([(64, 1), (64, 1), (128, 2), (128, 1)]):
        w = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (cin * 9))).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}")]
        nodes += [
            helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1], strides=[stride, stride]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
        ]
        x, cin = f"r{i}", cout
    inits += [
        numpy_helper.from_array((rng.standard_normal((10, cin)) * 0.1).astype(np.float32), "fc_w"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fc_b"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "profile_probe",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", PROBE_C, PROBE_HW, PROBE_HW])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    # NOTE: an IR version ONNX Runtime reads (onnx.helper would stamp the newest one)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))


def measure_activation_types(threads: int, rounds: int = 5, per_round: int = 20) -> dict[str, float]:
    """Speed-up over FP32 of U8S8 and S8S8 static INT8 (per-channel weights) on ONNX Runtime."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="edgesmith-init-") as tmp:
        fp32 = Path(tmp) / "probe.onnx"
        _conv_net(fp32)
        variants = {}
        for name, act in (("uint8", QuantType.QUInt8), ("int8", QuantType.QInt8)):

            class Reader(CalibrationDataReader):
                def __init__(self):
                    self.it = iter([{"input": rng.random((4, PROBE_C, PROBE_HW, PROBE_HW), dtype=np.float32)} for _ in range(4)])

                def get_next(self):
                    return next(self.it, None)

            out = Path(tmp) / f"probe.{name}.onnx"
            quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=act, weight_type=QuantType.QInt8, per_channel=True)
            variants[name] = out
        sessions = [OrtSession(fp32, threads, "all")] + [OrtSession(p, threads, "all") for p in variants.values()]
        times = time_interleaved(sessions, {"input": rng.random((1, PROBE_C, PROBE_HW, PROBE_HW), dtype=np.float32)}, 5, rounds * per_round, None, rounds)
        medians = [float(np.median(t)) for t in times]
    return {name: medians[0] / m for name, m in zip(variants, medians[1:])}


def init_profile(name: str, backend: str, threads: int | None = None, benchmark: bool = True) -> tuple[dict[str, Any], list[str]]:
    """The profile dict for this machine and notes on how each default was chosen."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())
    flags = cpu_flags()
    cores = os.cpu_count() or 1
    threads = threads or cores
    vnni = any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp"))
    reduce_range = arch == "x86_64" and not vnni
    notes = [f"made by `edgesmith profiles init` on {date.today().isoformat()}: {arch}, {cores} cores, flags {', '.join(flags) or 'unknown'}"]
    activation = "uint8"
    if reduce_range:
        notes.append("x86 without VNNI: u8s8 multiplies can saturate on AVX2, so reduce_range is on")
    if benchmark and backend == "onnxruntime":
        speed = measure_activation_types(threads)
        activation = "int8" if speed["int8"] > SWITCH_MARGIN * speed["uint8"] else "uint8"
        notes.append(
            "INT8 speed-up over FP32 on a probe conv net (ONNX Runtime, batch 1): "
            + ", ".join(f"{k} activations {v:.2f}x" for k, v in speed.items())
            + f" -> {activation}"
        )
    profile = {
        "name": name,
        "description": f"This machine ({platform.processor() or arch}), {backend}, written by `edgesmith profiles init`.",
        "backend": backend,
        "device": "cpu",
        "hardware": {"arch": arch, "isa": flags, "cores": cores, "description": "measured by profiles init"},
        "threads": threads,
        "batch_sizes": [1, 8],
        "precisions": ["fp32", "int8"],
        "quantization": {
            "activation_type": activation,
            "weight_type": "int8",
            "per_channel": True,
            "reduce_range": reduce_range,
            "rationale": "; ".join(notes[1:]) or "defaults",
        },
        "budgets": [
            {"metric": "top1", "goal": "max-degradation", "value": 0.5},
            {"metric": "output_fidelity", "goal": "min", "value": 0.9},
            {"metric": "speedup_vs_fp32", "goal": "min", "value": 1.0, "batch": 1},
            {"metric": "peak_memory_mb", "goal": "max", "value": 2048},
        ],
        "estimated": False,
        "notes": " ".join(notes) + " Latency budgets are model-specific: add them per target in your recipe.",
    }
    return profile, notes
