"""Native code is never handed a malformed node: every attribute and size of ``edgesmith.BinaryConv`` is
checked before memory is touched, in every route (ONNX Runtime's custom op, OpenVINO's compiled extension
in C++, the lowering, the packing code), each a clear error naming the node; fuzzed over attributes and
shapes (hypothesis), run in a child process so a crash shows as its exit status. The wide SIMD path checks
every instruction set it uses; both paths are forced and agree. The compiled extension is loaded only from
a private folder and only when its recorded hash matches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _model(path: Path, a: dict, w_shape: tuple, n_alpha: int, n_beta: int, n_bias: int, x_shape: tuple) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.integers(0, 256, size=w_shape, dtype=np.uint8) if all(d > 0 for d in w_shape) else np.zeros(w_shape, np.uint8)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.ones(n_alpha, np.float32), "alpha"),
        numpy_helper.from_array(np.zeros(n_beta, np.float32), "beta"),
        numpy_helper.from_array(np.zeros(n_bias, np.float32), "bias"),
    ]
    node = helper.make_node("BinaryConv", ["x", "w", "alpha", "beta", "bias"], ["y"], name="fuzzed_conv", domain="edgesmith", **a)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("edgesmith", 1)], ir_version=9)
    onnx.save(model, str(path))


def _valid(a: dict, w_shape: tuple, n_alpha: int, n_beta: int, n_bias: int, x_shape: tuple) -> bool:
    """Written out independently of edgesmith's own check: what a well-formed node is."""
    c, g = a["channels"], a["group"]
    if min(a["stride_h"], a["stride_w"], a["dilation_h"], a["dilation_w"], g, c) < 1 or min(a["pad_h"], a["pad_w"]) < 0 or c % g:
        return False
    o, kh, kw, nbytes = w_shape
    if nbytes != 8 * ((c // g + 63) // 64) or o < 1 or o % g or not (1 <= kh <= 64 and 1 <= kw <= 64):
        return False
    if (n_alpha, n_beta, n_bias) != (o, c, o) or x_shape[1] != c:
        return False
    return all(
        x_shape[2 + d] + 2 * p - dl * (k - 1) - 1 >= 0 for d, (k, p, dl) in enumerate(((kh, a["pad_h"], a["dilation_h"]), (kw, a["pad_w"], a["dilation_w"])))
    )


MUTATIONS = [None, None, None, "stride0", "stride-", "dilation0", "dilation-", "pad-", "group0", "group_nodiv", "bytes_short", "bytes_long",
             "alpha", "beta", "bias", "kernel0", "x_small", "x_channels", "out_nodiv"]  # fmt: skip


@st.composite
def cases(draw):
    """A well-formed node, then (mostly) one thing broken in it."""
    g = draw(st.sampled_from([1, 1, 2, 3]))
    c = g * draw(st.sampled_from([1, 3, 22, 33]))
    o = g * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    a = {"channels": c, "group": g, "stride_h": draw(st.integers(1, 2)), "stride_w": draw(st.integers(1, 2)), "pad_h": draw(st.integers(0, 2))}
    a.update(pad_w=draw(st.integers(0, 2)), dilation_h=draw(st.integers(1, 2)), dilation_w=draw(st.integers(1, 2)))
    h = max(1, a["dilation_h"] * (kh - 1) + 1 - 2 * a["pad_h"]) + draw(st.integers(0, 3))
    w = max(1, a["dilation_w"] * (kw - 1) + 1 - 2 * a["pad_w"]) + draw(st.integers(0, 3))
    nbytes = 8 * ((c // g + 63) // 64)
    n_alpha, n_beta, n_bias, x = o, c, o, [1, c, h, w]
    m = draw(st.sampled_from(MUTATIONS))
    if m in ("stride0", "stride-"):
        a["stride_w"] = 0 if m == "stride0" else -2
    elif m in ("dilation0", "dilation-"):
        a["dilation_h"] = 0 if m == "dilation0" else -1
    elif m == "pad-":
        a["pad_h"] = -1
    elif m == "group0":
        a["group"] = 0
    elif m == "group_nodiv":
        a["group"] = c + 1
    elif m in ("bytes_short", "bytes_long"):
        nbytes = nbytes - 1 if m == "bytes_short" else nbytes + 8
    elif m == "alpha":
        n_alpha += 1
    elif m == "beta":
        n_beta = max(n_beta - 1, 0)
    elif m == "bias":
        n_bias += 2
    elif m == "kernel0":
        kh = 0
    elif m == "x_small":
        x[2] = 1
        kh, a["dilation_h"], a["pad_h"] = 3, 2, 0
    elif m == "x_channels":
        x[1] = c + 1
    elif m == "out_nodiv" and g > 1:
        o, n_alpha, n_bias = o + 1, o + 1, o + 1
    return a, (o, kh, kw, nbytes), n_alpha, n_beta, n_bias, tuple(x)


def test_malformed_nodes_are_clear_errors_in_every_route_and_never_crash(tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("onnxruntime_extensions")
    found: list = []

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(cases())
    def collect(case):
        found.append(case)

    collect()
    lines, expect = [], {}
    for i, (a, w_shape, n_alpha, n_beta, n_bias, x) in enumerate(found):
        path = tmp_path / f"case{i}.onnx"
        _model(path, a, w_shape, n_alpha, n_beta, n_bias, x)
        lines.append(json.dumps({"id": i, "model": str(path), "x": list(x)}))
        expect[i] = _valid(a, w_shape, n_alpha, n_beta, n_bias, x)
    assert 5 < sum(expect.values()) < len(expect)  # the fuzz covers both kinds
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("binary_conv_child.py"))],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, f"the routes crashed (exit {proc.returncode}): {proc.stderr[-2000:]}"
    results = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert len(results) == len(found)
    for r in results:
        case = found[r["id"]]
        if expect[r["id"]]:
            assert "ort" in r and "ov_native" in r, (case, r)
            np.testing.assert_allclose(np.asarray(r["ort"]), np.asarray(r["ov_native"]), rtol=1e-5, atol=1e-4)
        else:
            assert "ort_error" in r and "edgesmith.BinaryConv" in r["ort_error"] and "fuzzed_conv" in r["ort_error"], (case, r)
            # the compiled op alone (no Python check in front of it): a clean refusal, never a read out of bounds
            assert "ov_native_error" in r, (case, r)


def test_the_packing_code_refuses_what_the_kernel_cannot_run():
    from edgesmith.runtime.kernels import binary as B

    bits = np.zeros((4, 3, 3, 1), np.uint64)
    for kwargs, match in [
        ({"stride": (0, 1)}, "strides and dilations >= 1"),
        ({"dilation": (1, -1)}, "strides and dilations >= 1"),
        ({"padding": (-1, 0)}, "pads >= 0"),
        ({"groups": 0}, "groups"),
    ]:
        with pytest.raises(ValueError, match=match):
            B.BinaryConv2d.from_packed(bits, 3, **kwargs)


def test_every_simd_path_is_forced_and_they_agree():
    from edgesmith.runtime.kernels import binary as B

    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 70, 9, 9)).astype(np.float32), rng.standard_normal((13, 70, 3, 3)).astype(np.float32)
    got = {impl: B.BinaryConv2d(w, stride=(2, 2), padding=(1, 1), impl=impl)(x) for impl in ("portable", "avx2", "avx512")}
    np.testing.assert_array_equal(got["portable"], got["avx512"])
    np.testing.assert_array_equal(got["portable"], got["avx2"])
    flags = (Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else "").split()
    avx2 = "avx2" in flags
    wide = avx2 and all(f in flags for f in ("avx512f", "avx512_vpopcntdq", "avx512vl"))
    narrower = "avx2" if avx2 else "portable"
    assert B.impl_used("avx512") == ("avx512" if wide else narrower)  # every instruction set the wide path uses, checked
    assert B.impl_used("avx2") == narrower


def test_the_extension_is_loaded_only_from_a_private_folder_with_its_recorded_hash(tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    from edgesmith.errors import BackendUnavailable
    from edgesmith.runtime.kernels import ov_extension

    monkeypatch.setenv("EDGESMITH_CACHE_DIR", str(tmp_path / "cache"))
    old = os.umask(0)  # a permissive umask: the folder must still be private
    try:
        ov_extension.library_path.cache_clear()
        lib = Path(ov_extension.library_path())
    finally:
        os.umask(old)
    assert lib.parent.stat().st_mode & 0o077 == 0 and lib.stat().st_mode & 0o022 == 0
    lib.write_bytes(lib.read_bytes() + b"tampered")  # replaced behind edgesmith's back: rebuilt, never loaded
    ov_extension.library_path.cache_clear()
    assert Path(ov_extension.library_path()).read_bytes()[-8:] != b"tampered"
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # others may write here, and it is not sticky
    monkeypatch.setenv("EDGESMITH_CACHE_DIR", str(shared / "cache"))
    ov_extension.library_path.cache_clear()
    with pytest.raises(BackendUnavailable, match="can be written by others"):
        ov_extension.library_path()
    ov_extension.library_path.cache_clear()
