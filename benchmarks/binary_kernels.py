"""One binary conv layer against ONNX Runtime's FP32 conv of the same shape (issue 15's kernel benchmark).

    python benchmarks/binary_kernels.py

256 -> 256 channels, 3x3, padding 1, batch 1, 2 threads, at 14x14 and 28x28. The binary side is the whole
layer as a runtime would run it: sign-and-pack of the float activations (channels-last) plus the
XOR-popcount convolution (weights packed once, ahead of time), with the AVX-512 VPOPCNTDQ path, the AVX2
path (VPSHUFB nibble popcount) and the portable path, each forced. ORT runs a one-node Conv model. Medians of interleaved rounds (one process, alternating).
"""

from __future__ import annotations

import time

import numpy as np


def _onnx_conv(c: int, o: int, hw: int, w: np.ndarray):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda x: s.run(None, {"x": x})


def main() -> None:
    from edgesmith.runtime.kernels import binary as B

    print(f"CPU has AVX-512 VPOPCNTDQ: {B.has_vpopcntdq()}\n")
    print("| shape | ORT FP32 conv | binary, AVX-512 | speed-up | binary, AVX2 | speed-up | binary, portable popcount | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for hw in (14, 28):
        c = o = 256
        x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
        w = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
        fns = {"ort": _onnx_conv(c, o, hw, w)}
        for impl in ("avx512", "avx2", "portable"):  # weights prepared once, as a loaded layer holds them
            fns[impl] = B.BinaryConv2d(np.sign(w) + (w == 0), padding=(1, 1), threads=2, impl=impl)
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(12):  # rounds, alternating
            for k, f in fns.items():
                for _ in range(3):
                    f(x)
                for _ in range(10):
                    t0 = time.perf_counter()
                    f(x)
                    times[k].append(time.perf_counter() - t0)
        med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
        print(
            f"| 256->256, 3x3, {hw}x{hw} | {med['ort']:.3f} ms | {med['avx512']:.3f} ms | {med['ort'] / med['avx512']:.1f}x | "
            f"{med['avx2']:.3f} ms | {med['ort'] / med['avx2']:.1f}x | {med['portable']:.3f} ms | {med['ort'] / med['portable']:.1f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
