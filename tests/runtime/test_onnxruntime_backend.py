from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest

from edgesmith.compress import PassContext, build_pass_config, get_pass
from edgesmith.data import load_dataset
from edgesmith.errors import ConfigError
from edgesmith.profiles import load_profile
from edgesmith.recipe import InputSpec
from edgesmith.runtime import get_backend
from edgesmith.runtime.bench import benchmark, make_feeds, summarize

SPEC = [InputSpec(name="input", shape=["batch", 1, 8, 8])]


@pytest.fixture(scope="module")
def int8_model(digits_onnx, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("int8")
    calib = load_dataset("digits", SPEC, role="calibration", samples=128)
    ctx = PassContext(work_dir=tmp, profile=load_profile("x86-avx512-vnni-ort"), input_specs=tuple(SPEC), calibration=calib)
    return get_pass("ptq_int8").apply(digits_onnx, build_pass_config("ptq_int8", {}), ctx)


def test_compiled_int8_artifact_executes_integer_kernels(int8_model, tmp_path):
    """The optimised graph ORT will execute has integer conv/gemm ops, not float ones fed by DQ."""
    backend = get_backend("onnxruntime")
    art = backend.compile(int8_model, tmp_path / "compiled.onnx", load_profile("x86-avx512-vnni-ort"))
    graph = onnx.load(str(art.path)).graph
    ops = Counter(n.op_type for n in graph.node)
    assert ops["QLinearConv"] == 3 and ops["QGemm"] == 1
    assert ops["Conv"] == 0 and ops["Gemm"] == 0 and ops["FusedConv"] == 0


def test_compiled_artifact_matches_the_unoptimised_model(int8_model, digits_test, tmp_path):
    backend = get_backend("onnxruntime")
    prof = load_profile("x86-avx512-vnni-ort")
    art = backend.compile(int8_model, tmp_path / "compiled.onnx", prof)
    x = digits_test[0][:64]
    from edgesmith.runtime.onnxruntime import OrtSession

    raw = OrtSession(int8_model, 1, "disable").run({"input": x})[0]
    compiled = backend.load(art, prof.threads).run({"input": x})[0]
    np.testing.assert_allclose(compiled, raw, atol=0.15)  # integer kernels vs reference QDQ maths
    assert (compiled.argmax(1) == raw.argmax(1)).mean() > 0.98


def test_benchmark_runs_in_a_child_and_reports_consistent_statistics(int8_model, tmp_path):
    backend = get_backend("onnxruntime")
    art = backend.compile(int8_model, tmp_path / "c.onnx", load_profile("x86-avx512-vnni-ort"))
    stats = benchmark(art, make_feeds(SPEC, 4), threads=1, warmup=3, iterations=30)
    assert stats.iterations == 30 and stats.batch == 4 and stats.threads == 1
    assert 0 < stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p95_ms <= stats.p99_ms
    assert stats.throughput_per_s == pytest.approx(4 / (stats.mean_ms / 1e3))
    assert 10 < stats.peak_rss_mb < 2000 and stats.model_memory_mb >= 0


def test_benchmark_by_duration(int8_model):
    from edgesmith.runtime import Artifact

    stats = benchmark(Artifact(int8_model, "onnxruntime", {"load_level": "all"}), make_feeds(SPEC, 1), threads=1, warmup=0, iterations=1, duration_s=0.3)
    assert stats.iterations > 5


def test_summarize_percentiles():
    s = summarize([i / 1000 for i in range(1, 101)], batch=2, threads=1, warmup=0)
    assert s["p50_ms"] == pytest.approx(50.5) and s["p99_ms"] == pytest.approx(99.01)
    assert s["throughput_per_s"] == pytest.approx(2 / 0.0505)


def test_unknown_backend_lists_available_ones():
    with pytest.raises(ConfigError, match="available backends: onnxruntime, openvino"):
        get_backend("coreml")


def test_benchmark_against_times_both_and_keeps_memory_per_artifact(int8_model, digits_onnx, tmp_path):
    from edgesmith.runtime.bench import benchmark_against

    backend = get_backend("onnxruntime")
    prof = load_profile("x86-avx512-vnni-ort")
    cand = backend.compile(int8_model, tmp_path / "c.onnx", prof)
    base = backend.compile(digits_onnx, tmp_path / "b.onnx", prof)
    c, b = benchmark_against(cand, base, make_feeds(SPEC, 1), threads=1, warmup=2, iterations=40, rounds=4)
    assert c.iterations == b.iterations == 40
    assert c.p50_ms > 0 and b.p50_ms > 0 and c.peak_rss_mb > 10 and b.peak_rss_mb > 10


def test_interleaved_timing_alternates_sessions(monkeypatch):
    from edgesmith.runtime import bench
    from edgesmith.runtime.bench import time_interleaved

    monkeypatch.setattr(bench, "SETTLE_RUN_S", 0.0)  # settle by run count alone, so the sequence is exact

    calls: list[str] = []

    class Fake:
        def __init__(self, name):
            self.name = name

        def run(self, feeds):
            calls.append(self.name)

    times = time_interleaved([Fake("a"), Fake("b")], {}, warmup=1, iterations=6, duration_s=None, rounds=3)
    assert [len(t) for t in times] == [6, 6]
    # warm-up once each, then per round: 2 untimed settle runs + 2 timed runs, session after session,
    # the order alternating between rounds (AB, BA, AB) so neither always runs second
    assert calls[:2] == ["a", "b"] and calls[2:] == ["a"] * 4 + ["b"] * 8 + ["a"] * 8 + ["b"] * 4
