"""Subnetworks of a random network (Edge-Popup / Biprop with weight recycling, algorithms.md §5) and the
deploy-time folds (RIFormer, RepVGG, §12): the property tests the seeds state, plus a short search on digits."""

from __future__ import annotations

import math

import pytest
import torch

from edgesmith.compress import build_pass_config, get_pass
from edgesmith.compress.registry import PassContext
from edgesmith.errors import ConfigError
from edgesmith.schema import InputSpec


def test_mask_keeps_floor_k_numel_largest_scores():
    from edgesmith.compress.prune.subnetwork import subnet_mask

    s = torch.randn(7, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    for keep in (0.1, 0.5, 0.77):
        m = subnet_mask(s, keep)
        assert int(m.sum()) == math.floor(keep * s.numel())
        assert s.abs()[m].min() >= s.abs()[~m].max()


def test_biprop_alpha_is_mean_magnitude_over_kept_entries():
    from edgesmith.compress.prune.subnetwork import biprop_alpha, subnet_mask

    g = torch.Generator().manual_seed(1)
    w, s = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    m = subnet_mask(s, 0.5)
    assert float(biprop_alpha(w, m)) == pytest.approx(float(w.abs()[m].mean()), rel=1e-6)


def test_recycling_changes_only_low_score_positions_with_high_score_values():
    from edgesmith.compress.prune.subnetwork import recycle_weights

    g = torch.Generator().manual_seed(2)
    w, s = torch.randn(10, 10, generator=g), torch.randn(10, 10, generator=g)
    before = w.clone()
    low, high = recycle_weights(w, s, 0.1)
    changed = (w != before).flatten().nonzero().flatten()
    assert len(low) == len(high) == 10
    assert set(changed.tolist()) <= set(low.tolist())  # only low-score positions change
    assert s.abs().flatten()[low].max() <= s.abs().flatten()[high].min()  # low are the lowest, high the highest
    assert torch.equal(w.flatten()[low], before.flatten()[high])  # new values come from high-score weights


def test_subnetwork_search_on_digits_beats_chance_and_bakes_plain_weights(tmp_path):
    from edgesmith.data.sources import load_dataset
    from edgesmith.zoo.digits import digits_cnn

    spec = (InputSpec(name="input", shape=["batch", 1, 8, 8], dtype="float32"),)
    data = load_dataset("digits", spec, role="calibration", split="train")
    ctx = PassContext(work_dir=tmp_path, input_specs=spec, calibration=data)
    for method in ("edge-popup", "biprop"):
        cfg = build_pass_config("subnetwork", {"method": method, "keep": 0.5, "epochs": 4, "recycle_every": 1})
        model = get_pass("subnetwork").apply(digits_cnn(), cfg, ctx)
        d = ctx.details["subnetwork"]
        assert d["held_out_top1"] > 50 and d["recycled"] >= 2  # chance is 10%: the random network holds a classifier
        convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert all(type(m) in (torch.nn.Conv2d, torch.nn.Linear) for m in convs)  # baked: no wrappers left
        assert abs(float(convs[0].weight.eq(0).float().mean()) - 0.5) < 0.02
        if method == "biprop":  # binary: one magnitude per layer
            assert len(convs[0].weight[convs[0].weight != 0].abs().unique()) <= 2
    with pytest.raises(ConfigError, match="keep must be strictly between 0 and 1"):
        build_pass_config("subnetwork", {"keep": 1.0})


def _randomise_bn(model):
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))


@pytest.mark.parametrize("groups", [1, 2])
def test_repvgg_fold_outputs_equal(tmp_path, groups):
    from edgesmith.zoo.blocks import RepVGGBlock

    model = torch.nn.Sequential(RepVGGBlock(4, 8, 2, groups=groups), RepVGGBlock(8, 8, 1, groups=groups), RepVGGBlock(8, 8, 1, groups=groups)).eval()
    _randomise_bn(model)
    x = torch.randn(3, 4, 12, 12)
    ref = model(x)
    ctx = PassContext(work_dir=tmp_path)
    folded = get_pass("reparam").apply(model, build_pass_config("reparam", {}), ctx)
    assert not any(isinstance(m, RepVGGBlock) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.Conv2d) for m in folded.modules()) == 3
    torch.testing.assert_close(folded(x), ref, rtol=1e-4, atol=1e-5)
    assert ctx.details["reparam"]["folded"] == {"RepVGGBlock": 3}


def test_riformer_affine_mixer_folds_into_its_groupnorm(tmp_path):
    from edgesmith.zoo.blocks import AffineMixerBlock, FoldedMixer

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), AffineMixerBlock(8), torch.nn.ReLU(), AffineMixerBlock(8, groups=2)).eval()
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, AffineMixerBlock):
                m.mixer.scale.copy_(torch.randn(8, generator=g))
                m.mixer.bias.copy_(torch.randn(8, generator=g))
                m.norm.weight.copy_(torch.randn(8, generator=g))
                m.norm.bias.copy_(torch.randn(8, generator=g))
    x = torch.randn(2, 3, 6, 6)
    ref = model(x)
    folded = get_pass("reparam").apply(model, build_pass_config("reparam", {}), PassContext(work_dir=tmp_path))
    assert sum(isinstance(m, FoldedMixer) for m in folded.modules()) == 2
    assert not any(isinstance(m, AffineMixerBlock) for m in folded.modules())
    torch.testing.assert_close(folded(x), ref, rtol=1e-4, atol=1e-5)


def test_reparam_on_a_model_without_blocks_changes_nothing(tmp_path):
    from edgesmith.zoo.digits import digits_cnn

    model = digits_cnn().eval()
    x = torch.randn(2, 1, 8, 8)
    ref = model(x)
    ctx = PassContext(work_dir=tmp_path)
    out = get_pass("reparam").apply(model, build_pass_config("reparam", {}), ctx)
    torch.testing.assert_close(out(x), ref)
    assert "nothing to fold" in ctx.notes[0]
