"""The default judge fits multi-output models: each output against its own spread (R²), decisions for
class outputs. On a detector-style model trained on the real digits (class, ink box, ink centroid), a
quantization that leaves the task unchanged passes and a broken head fails — where cosine could not tell."""

import pytest

from edgesmith.metrics import fidelity, is_decision_output


@pytest.fixture(scope="module")
def detector_outputs(tmp_path_factory):
    from edgesmith import pipeline
    from edgesmith.compress import PassContext, build_pass_config, get_pass
    from edgesmith.data import load_dataset
    from edgesmith.evaluate import Evaluator
    from edgesmith.profiles import load_profile
    from edgesmith.recipe import parse_recipe
    from edgesmith.runtime import get_backend
    from edgesmith.schema import InputSpec

    d = tmp_path_factory.mktemp("detector")
    pipeline.run(parse_recipe({"model": {"source": "edgesmith.zoo:trained_digits_detector"}, "stop_after": "export"}), d, out_dir=d / "e")
    specs = [InputSpec(name="input", shape=["batch", 1, 8, 8])]
    calib = load_dataset("digits", specs, role="calibration", split="train", samples=256)
    ev = Evaluator(load_dataset("digits", specs, role="evaluation", split="test"), "top1", use_cache=False)
    prof, ort = load_profile("x86-avx512-vnni-ort"), get_backend("onnxruntime")
    ref = ev.reference(ort, ort.compile(d / "e" / "model.onnx", d / "f.onnx", prof), 2)
    outs = {}
    for name, opts in (("int8", {}), ("broken", {"per_channel": False, "samples": 16, "calibration": "percentile", "percentile": 90.5})):
        (d / name).mkdir()
        ctx = PassContext(work_dir=d / name, profile=prof, input_specs=tuple(specs), calibration=calib)
        q = get_pass("ptq_int8").apply(d / "e" / "model.onnx", build_pass_config("ptq_int8", opts), ctx)
        outs[name] = ev.evaluate(ort, ort.compile(q, d / name / "q.onnx", prof), 2, ref)
    return ref, outs, prof


def test_the_detector_has_three_outputs_and_only_the_class_head_is_a_decision(detector_outputs):
    ref, _, _ = detector_outputs
    assert [o.shape[1] for o in ref.outputs] == [10, 4, 2]
    assert [is_decision_output(o) for o in ref.outputs] == [True, False, False]
    assert ref.metrics["top1"] > 95


def test_int8_that_keeps_the_task_passes_the_default_judge(detector_outputs):
    from edgesmith.evaluate import judge

    ref, outs, prof = detector_outputs
    m = outs["int8"].metrics
    assert m["output_fidelity"] >= 0.9 and m["decision_agreement"] >= 0.97 and ref.metrics["top1"] - m["top1"] <= 0.5
    verdicts = {v.metric: v.status for v in judge(prof, m, ref.metrics)}
    assert verdicts["output_fidelity"] == "pass" and verdicts["top1"] == "pass"


def test_a_broken_head_fails_even_where_its_cosine_looks_fine(detector_outputs):
    from edgesmith.evaluate import judge
    from edgesmith.metrics import cosine

    ref, outs, prof = detector_outputs
    broken = outs["broken"]
    box_cos = cosine(ref.outputs[1], broken.outputs[1])
    assert box_cos > 0.98  # what a cosine budget would have let through
    assert broken.metrics["output_fidelity"] < 0.5
    assert {v.metric: v.status for v in judge(prof, broken.metrics, ref.metrics)}["output_fidelity"] == "fail"


def test_fidelity_per_output_on_synthetic_heads():
    import numpy as np

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 10))
    box = np.clip(rng.normal(0.5, 0.05, size=(200, 4)), 0, 1)
    same = fidelity([logits, box], [logits + rng.normal(0, 0.01, logits.shape), box + rng.normal(0, 0.002, box.shape)])
    assert same["output_fidelity"] > 0.99 and same["decision_agreement"] > 0.95
    flat = fidelity([logits, box], [logits, np.full_like(box, box.mean())])  # a head that lost all variation
    assert flat["output_fidelity"] == pytest.approx(0.0) and flat["decision_agreement"] == 1.0
