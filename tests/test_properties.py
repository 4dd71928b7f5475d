"""Property tests (hypothesis) for the numeric helpers every verdict rests on."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgesmith.metrics import cosine, sqnr_db
from edgesmith.runtime.bench import summarize

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, (4, 6), elements=finite), arrays(np.float32, (4, 6), elements=finite))
def test_cosine_is_bounded_and_symmetric(a, b):
    c = cosine(a, b)
    assert -1.0 - 1e-9 <= c <= 1.0 + 1e-9
    assert abs(c - cosine(b, a)) < 1e-9


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, (3, 5), elements=st.floats(0.5, 10, width=32)), st.floats(1e-4, 0.5), st.floats(1.5, 4))
def test_sqnr_falls_as_noise_grows(ref, eps, factor):
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(ref.shape)
    small, large = sqnr_db(ref, ref + eps * noise), sqnr_db(ref, ref + factor * eps * noise)
    assert large < small
    assert abs((small - large) - 20 * np.log10(factor)) < 1e-3  # noise amplitude x k costs 20 log10 k dB


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1e-6, 1.0), min_size=2, max_size=200), st.integers(1, 64))
def test_latency_summary_is_ordered(times, batch):
    s = summarize(times, batch=batch, threads=1, warmup=0)
    assert s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p95_ms"] <= s["p99_ms"] <= max(times) * 1e3 + 1e-9
    assert s["throughput_per_s"] > 0 and s["iterations"] == len(times)
