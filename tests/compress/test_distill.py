"""Distillation: the seed methods' properties (§6, §7, §8, §10), the recovery engine, and its bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesmith.compress.distill.bpkd import bpkd_loss, edge_loss, edge_mask
from edgesmith.compress.distill.engine import RecoverConfig, fit, predict
from edgesmith.compress.distill.kd import kd_kl
from edgesmith.compress.distill.n2n import Arch, Policy, describe_teacher, params_of, reward
from edgesmith.compress.distill.self_distill import alpha_star, kernel_ridge_steps
from edgesmith.compress.distill.topkld import topk_kld
from edgesmith.errors import ConfigError, InputError
from tests.conftest import NO_SPEEDUP_BUDGET

# ---- §8 self-distillation: the paper's own numbers -------------------------------------------------


@pytest.mark.parametrize(
    "alpha, steps, limit",
    [
        (0.0, [0.16477, 0.15076, 0.14915, 0.15561, 0.16735, 0.18251], 0.49505),
        (0.25, [0.16477, 0.15309, 0.14958, 0.14903, 0.14946, 0.15011], 0.15250),
        (0.35, [0.16477, 0.15424, 0.15089, 0.14983, 0.14954, 0.14948], 0.14959),
    ],
)
def test_self_distillation_reproduces_the_kernel_ridge_example(alpha, steps, limit):
    errors, lim, _ = kernel_ridge_steps(alpha)
    assert [round(e, 5) for e in errors] == steps
    assert round(lim, 5) == limit


def test_self_distillation_iterates_converge_to_the_closed_form_limit_and_alpha_1_is_a_fixed_point():
    errors, lim, preds = kernel_ridge_steps(0.35, steps=400)
    assert abs(errors[-1] - lim) < 1e-9
    errors1, _, preds1 = kernel_ridge_steps(1.0, steps=5)
    assert all(np.allclose(p, preds1[0]) for p in preds1) and len(set(np.round(errors1, 12))) == 1


def test_alpha_star_is_the_projection_and_clips():
    rng = np.random.default_rng(0)
    f0, f1 = rng.normal(size=50), rng.normal(size=50)
    assert alpha_star(f0, f1, f0 + 0.3 * (f1 - f0)) == pytest.approx(0.3)
    assert alpha_star(f0, f1, f0 + 2.0 * (f1 - f0)) == 1.0 and alpha_star(f0, f1, f0 - (f1 - f0)) == 0.0
    assert alpha_star(f0, f0, f1) == 1.0


# ---- §6 TopKLD (our reading) ------------------------------------------------------------------------

logits = st.lists(st.floats(-8, 8, allow_nan=False), min_size=10, max_size=10)


@settings(max_examples=60, deadline=None)
@given(s=st.lists(logits, min_size=2, max_size=4), t=st.lists(logits, min_size=2, max_size=4), k=st.integers(1, 10), T=st.floats(0.5, 8))
def test_topkld_properties(s, t, k, T):
    n = min(len(s), len(t))
    zs, zt = torch.tensor(s[:n]), torch.tensor(t[:n])
    assert float(topk_kld(zs, zt, k, temperature=T)) >= -1e-5  # never negative
    assert abs(float(topk_kld(zt, zt, k, temperature=T))) < 1e-5  # zero at student = teacher
    assert float(topk_kld(zs, zt, 10, temperature=T)) == pytest.approx(float(kd_kl(zs, zt, T)), rel=1e-4, abs=1e-5)  # k = C: plain KL


def test_topkld_tail_counts_beyond_its_mass():
    # same head, different tails: plain KL barely notices (the tail mass is tiny), TopKLD does
    zt = torch.tensor([[10.0, 9.0, 0.0, -1.0, -2.0, -3.0]])
    zs = torch.tensor([[10.0, 9.0, -3.0, -2.0, -1.0, 0.0]])
    assert float(topk_kld(zs, zt, k=2)) > 50 * float(kd_kl(zs, zt, 1.0))


# ---- §7 BPKD ----------------------------------------------------------------------------------------


def test_bpkd_edge_mask_and_losses():
    labels = torch.zeros(2, 16, 16, dtype=torch.long)
    labels[0, 4:12, 4:12] = 3
    mask = edge_mask(labels, 5)
    assert float(mask.min()) >= 0 and float(mask.max()) <= 1 and mask.shape == (2, 5, 16, 16)
    assert float(mask[1].sum()) == 0.0  # a single-class image has no edges
    assert float(mask[0, 3].sum()) > 0 and float(mask[0, 3, 8, 8]) == 0.0  # the square's border, not its inside
    small = edge_mask(labels, 5, (8, 8))
    assert small.shape == (2, 5, 8, 8) and 0 < float(small[0, 3].max()) <= 1
    z = torch.randn(2, 5, 16, 16)
    out = bpkd_loss(z, z.clone(), labels)
    assert abs(float(out["edge"])) < 1e-6 and abs(float(out["body"])) < 1e-6  # zero at student = teacher
    one = torch.zeros(1, 16, 16, dtype=torch.long)
    assert float(edge_loss(torch.randn(1, 5, 16, 16), torch.randn(1, 5, 16, 16), edge_mask(one, 5))) == 0.0
    assert float(bpkd_loss(torch.randn(2, 5, 16, 16), z, labels)["edge"]) > 0


def test_segmentation_task_from_the_digits():
    from edgesmith.zoo.segmentation import NUM_CLASSES, miou, seg_student, seg_teacher, seg_train

    x, masks = next(iter(seg_train()))
    assert x.shape == (32, 1, 32, 32) and masks.shape == (32, 32, 32) and masks.max() <= NUM_CLASSES - 1
    assert set(np.unique(masks[0])) == {0, int(masks[0].max())}  # background and the digit's class
    for f in (seg_teacher, seg_student):
        assert f()(torch.from_numpy(x[:2])).shape == (2, NUM_CLASSES, 32, 32)
    assert params_of(seg_teacher()) > 10 * params_of(seg_student())
    assert miou(masks, masks) == 100.0


# ---- §10 N2N ---------------------------------------------------------------------------------------


def test_n2n_reward_properties():
    c = np.linspace(0, 1, 101)
    r = np.array([reward(1.0, x) for x in c])
    assert reward(1.0, 0.0) == 0.0 and reward(1.0, 1.0) == 1.0
    assert np.all(np.diff(r) > 0) and np.all(np.diff(r, 2) < 0)  # monotone, concave
    assert reward(0.5, 0.8) == pytest.approx(0.5 * reward(1.0, 0.8))


def test_n2n_policy_samples_buildable_smaller_students_of_the_teacher():
    from edgesmith.zoo.digits32 import digits_resnet

    teacher = digits_resnet()
    arch = describe_teacher(teacher)
    assert arch.stem == 16 and arch.blocks == [(16, 1), (16, 1), (32, 2), (32, 1), (64, 2), (64, 1)]
    assert params_of(arch.build()) == params_of(teacher)
    policy = Policy(seed=0)
    for _ in range(10):
        student, logp, kept, scales = policy.sample(arch)
        assert 0 in kept and len(scales) == len(kept) and logp.requires_grad
        if student.blocks:
            assert student.build()(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
            assert params_of(student.build()) <= params_of(teacher)
    with pytest.raises(ValueError):
        Arch(1, 16, [], 10).build()  # no blocks: the invalid architecture (reward -1)
    with pytest.raises(ConfigError, match="ResNet-style"):
        from edgesmith.zoo.digits import digits_cnn

        describe_teacher(digits_cnn())


# ---- the engine --------------------------------------------------------------------------------------


def _digits(samples=None, split="train", labels=True):
    from edgesmith.data import load_dataset
    from edgesmith.recipe import InputSpec

    ds = load_dataset("digits", [InputSpec(name="input", shape=["batch", 1, 8, 8])], role="calibration", split=split, samples=samples)
    if not labels:
        for b in ds.batches:
            b.labels = None
    return ds


def _test_top1(model):
    from edgesmith.data.digits import load_digits_split

    x, y = load_digits_split("test")
    return float((predict(model, torch.from_numpy(x)).argmax(1).numpy() == y).mean() * 100)


def test_distilled_student_beats_the_labels_only_student_at_the_same_budget():
    from edgesmith.zoo.digits import digits_cnn, pretrained_digits_cnn

    teacher, data = pretrained_digits_cnn(), _digits(150)
    accs = {}
    for loss, alpha in (("ce", 0.0), ("kd", 0.7)):
        torch.manual_seed(0)
        student = digits_cnn(width=4)
        cfg = RecoverConfig(loss=loss, alpha=alpha, temperature=8.0, steps=300, lr=3e-3, val_fraction=0.0, patience=None, seed=0)
        result = fit(student, teacher, data, ["input"], cfg, progress=False)
        assert result.steps == 300
        accs[loss] = _test_top1(student)
    # measured: 84.3 (labels alone) vs 87.8 (distilled); over seeds 0-4 distillation won every one (+1.0 to +6.5)
    assert accs["kd"] > accs["ce"] + 1.5, accs


def test_engine_keeps_the_best_checkpoint_and_stops_early():
    from edgesmith.zoo.digits import digits_cnn, pretrained_digits_cnn

    torch.manual_seed(0)
    student = digits_cnn(width=4)
    cfg = RecoverConfig(loss="kd", steps=2000, eval_every=10, patience=3, lr=3e-2, seed=0)
    result = fit(student, pretrained_digits_cnn(), _digits(300), ["input"], cfg, progress=False)
    assert result.stopped.startswith("early stop") and result.steps < 2000
    assert result.stopped.endswith("(2 rate drops)")  # each plateau first lowered the rate 10x from the best checkpoint
    best = max(h["top1"] for h in result.history)
    assert result.best_metric == max(best, result.best_metric) and result.best_step <= result.steps
    assert len(result.losses) == result.steps and np.isfinite(result.losses).all()


def test_hint_loss_builds_adapters_and_trains():
    from edgesmith.compress.distill.hint import FeatureHint
    from edgesmith.zoo.digits import digits_cnn, pretrained_digits_cnn

    teacher, student = pretrained_digits_cnn(), digits_cnn(width=8)
    hint = FeatureHint(student, teacher, [("2", "2"), ("11", "11")])  # a feature map (first ReLU) and a vector (flattened pooling)
    x = torch.randn(4, 1, 8, 8)
    student(x), teacher(x)
    assert float(hint.loss().detach()) > 0 and [type(a).__name__ for a in hint.adapters] == ["Conv2d", "Linear"]
    assert hint.adapters[0].weight.shape == (32, 8, 1, 1) and hint.adapters[1].weight.shape == (128, 32)
    hint.remove()
    twin = FeatureHint(teacher, teacher, [("2", "2")])
    teacher(x)
    assert float(twin.loss().detach()) == 0.0 and type(twin.adapters[0]).__name__ == "Identity"
    twin.remove()
    torch.manual_seed(0)
    result = fit(digits_cnn(width=8), teacher, _digits(200), ["input"], RecoverConfig(loss="hint", features=(("5", "5"),), steps=30, seed=0), progress=False)
    assert result.steps == 30 and np.isfinite(result.losses).all()


def test_engine_bad_input():
    from edgesmith.zoo.digits import digits_cnn, pretrained_digits_cnn

    teacher = pretrained_digits_cnn()
    with pytest.raises(InputError, match=r"teacher \[2, 10\], student \[2, 12\]"):
        fit(digits_cnn(num_classes=12), teacher, _digits(64), ["input"], RecoverConfig(steps=5), progress=False)
    with pytest.raises(ConfigError, match="has no layer 'features.9'") as e:
        fit(digits_cnn(width=4), teacher, _digits(64), ["input"], RecoverConfig(loss="hint", features=(("features.9", "2"),), steps=5), progress=False)
    assert "its layers: 0, 1, 2" in e.value.hint
    with pytest.raises(ValueError, match="budget of zero"):
        RecoverConfig(steps=0)
    with pytest.raises(ValueError, match="budget of zero"):
        RecoverConfig(minutes=0)
    with pytest.raises(InputError, match="trains on labels, and the data"):
        fit(digits_cnn(width=4), teacher, _digits(64, labels=False), ["input"], RecoverConfig(loss="ce", steps=5), progress=False)
    # without labels, the label term drops out and the student learns from the teacher alone, whatever alpha says
    r = fit(digits_cnn(width=4), teacher, _digits(64, labels=False), ["input"], RecoverConfig(loss="kd", alpha=0.5, steps=5), progress=False)
    assert r.metric_name == "decisions kept" and r.start_metric is not None
    with pytest.raises(InputError, match="single|at least 2"):
        fit(digits_cnn(width=4), teacher, _digits(64).take(1), ["input"], RecoverConfig(steps=5), progress=False)
    frozen = digits_cnn(width=4).requires_grad_(False)
    with pytest.raises(InputError, match="no trainable parameters"):
        fit(frozen, teacher, _digits(64), ["input"], RecoverConfig(steps=5), progress=False)


# ---- the passes, through recipes ----------------------------------------------------------------------


def _ctx(tmp_path, samples=300):
    from edgesmith.compress import PassContext
    from edgesmith.recipe import InputSpec

    return PassContext(work_dir=tmp_path, input_specs=(InputSpec(name="input", shape=["batch", 1, 8, 8]),), calibration=_digits(samples))


def test_qat_trains_through_the_engine_with_a_recover_block(tmp_path):
    from edgesmith.compress import build_pass_config, get_pass
    from edgesmith.zoo.digits import pretrained_digits_cnn

    ctx = _ctx(tmp_path)
    cfg = build_pass_config("qat", {"weight_bits": 4, "recover": {"loss": "topkld", "k": 3, "alpha": 0.5, "steps": 40, "eval_every": 10}})
    model = get_pass("qat").apply(pretrained_digits_cnn(), cfg, ctx)
    d = ctx.details["qat"]
    assert d["loss"] == "topkld" and d["steps"] <= 40 and "best held-out top1" in d["recovery"] and len(d["history"]) >= 1
    assert _test_top1(model) > 90
    with pytest.raises(ConfigError, match="pass 'rtn' has no recovery step"):
        build_pass_config("rtn", {"bits": 4, "recover": {"steps": 10}})
    with pytest.raises(ConfigError, match="recover.steps|budget of zero"):
        build_pass_config("qat", {"recover": {"steps": 0}})


def test_self_distill_pass_estimates_alpha_per_round(tmp_path):
    from edgesmith.compress import build_pass_config, get_pass
    from edgesmith.zoo.digits import pretrained_digits_cnn

    ctx = _ctx(tmp_path, 600)
    teacher = pretrained_digits_cnn()
    student = get_pass("self_distill").apply(teacher, build_pass_config("self_distill", {"rounds": 2, "epochs": 8}), ctx)
    rounds = ctx.details["self_distill"]["rounds"]
    assert len(rounds) == 2 and all(0.0 <= r["alpha"] <= 1.0 for r in rounds) and all(r["val_top1"] > 80 for r in rounds)
    assert student is not teacher and _test_top1(student) > 80


def test_n2n_pass_writes_the_found_architecture(tmp_path):
    from edgesmith.compress import build_pass_config, get_pass
    from edgesmith.data import load_dataset
    from edgesmith.recipe import InputSpec
    from edgesmith.zoo.digits32 import digits_resnet

    specs = (InputSpec(name="input", shape=["batch", 1, 32, 32]),)
    from edgesmith.compress import PassContext
    from edgesmith.data.sources import Batch, Dataset

    labelled = load_dataset("digits32", specs, role="calibration", split="train", samples=200)
    unlabelled = Dataset("digits32", [Batch(b.inputs) for b in labelled.batches])  # N2N searches without labels too
    ctx = PassContext(work_dir=tmp_path, input_specs=specs, calibration=unlabelled)
    cfg = build_pass_config("n2n", {"epochs": 1, "rollouts": 2, "candidate_epochs": 0.5, "final_epochs": 0.5, "finalists": 1})
    student = get_pass("n2n").apply(digits_resnet(), cfg, ctx)
    d = ctx.details["n2n"]
    assert len(d["rollouts"]) == 2 and d["student"].startswith("stem ") and d["params_student"] == params_of(student)
    assert d["teacher_val_top1"] == 100.0  # scored on the teacher's own decisions
    assert any("n2n: student architecture stem" in n for n in ctx.notes)
    with pytest.raises(ConfigError, match="budget of zero"):
        build_pass_config("n2n", {"epochs": 0})


def test_distill_pass_in_a_recipe_replaces_the_model_with_the_student(cli, tmp_path):
    import json

    import yaml

    recipe = {
        "name": "distill",
        "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
        "data": {"calibration": {"source": "digits", "split": "train"}, "evaluation": {"source": "digits", "split": "test"}},
        "passes": [{"type": "distill", "student": "edgesmith.zoo:digits_cnn", "steps": 60, "loss": "kd", "alpha": 0.7}],
        "targets": [
            {
                "profile": "x86-avx512-vnni-ort",
                "batch_sizes": [1],
                "budgets": [
                    {"metric": "top1", "goal": "max-degradation", "value": 100},
                    {"metric": "output_fidelity", "goal": "min", "value": 0.0},
                    {"metric": "decision_agreement", "goal": "min", "value": 0.0},  # a student answers differently by design
                    *NO_SPEEDUP_BUDGET,
                ],
            }
        ],
        "bench": {"iterations": 10},
        "output_dir": "out",
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    r = cli("run", tmp_path / "r.yaml")
    assert r.code == 0, r.stdout + r.stderr
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    notes = " ".join(m["notes"] if "notes" in m else sum((t["notes"] for t in m["targets"].values()), []))
    assert "distill: edgesmith.zoo:digits_cnn" in (tmp_path / "out" / "report.md").read_text() or "distill: edgesmith.zoo:digits_cnn" in notes
    recipe["passes"][0]["student"] = "edgesmith.zoo:digits_cnn_nonexistent"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(recipe))
    bad = cli("run", tmp_path / "bad.yaml", "--out", tmp_path / "bad")
    assert bad.code == 2 and len(bad.error_lines) == 1, bad.stderr
    recipe["passes"][0]["student"] = "edgesmith.zoo:digits_cnn"
    recipe["passes"][0]["steps"] = 0
    (tmp_path / "zero.yaml").write_text(yaml.safe_dump(recipe))
    zero = cli("run", tmp_path / "zero.yaml", "--out", tmp_path / "zero")
    assert zero.code == 2 and "budget of zero" in zero.stderr
