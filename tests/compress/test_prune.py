"""Pruning passes: channel pruning that shrinks the graph (shapes, couplings, export and ORT parity, bad
input), N:M groups, magnitude sparsity, TEDDY's ℓ0 projection and edge scores (the property tests of
algorithms.md §4), and recovery training that keeps the zeros."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from edgesmith.compress import build_pass_config, get_pass
from edgesmith.compress.registry import PassContext
from edgesmith.errors import ConfigError
from edgesmith.schema import InputSpec

SPEC32 = (InputSpec(name="input", shape=["batch", 1, 32, 32], dtype="float32"),)


def _ctx(tmp_path: Path, specs=SPEC32, calibration=None) -> PassContext:
    return PassContext(work_dir=tmp_path, input_specs=specs, calibration=calibration)


def _prune(model, options, tmp_path, **kw):
    ctx = _ctx(tmp_path, **kw)
    out = get_pass("prune_channels").apply(model, build_pass_config("prune_channels", options), ctx)
    return out, ctx


def _convs(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]


def test_channel_pruning_halves_the_resnet_and_keeps_residual_adds_consistent(tmp_path):
    from edgesmith.zoo.digits32 import digits_resnet

    model = digits_resnet().eval()
    widths = {n: m.out_channels for n, m in _convs(model)}
    pruned, ctx = _prune(model, {"ratio": 0.5}, tmp_path)
    for n, m in _convs(pruned):
        assert m.out_channels == widths[n] // 2, n  # 16 -> 8, 32 -> 16, 64 -> 32: multiples of 8
        assert m.out_channels % 8 == 0
    # every residual add gets equal widths (a mismatch would raise) and the classifier keeps its 10 outputs
    assert pruned(torch.randn(3, 1, 32, 32)).shape == (3, 10)
    fc = [m for m in pruned.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert fc.out_features == 10 and fc.in_features == 32  # the linear after the pooled flatten lost matching columns
    d = ctx.details["prune_channels"]
    assert d["params"][1] < d["params"][0] / 3 and d["macs"][1] < d["macs"][0] / 3
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 10) and _convs(model)[0][1].out_channels == 16  # the original untouched


def test_channel_pruning_keeps_depthwise_groups_equal_to_channels(tmp_path):
    from edgesmith.zoo.digits32 import digits_mobilenet

    pruned, _ = _prune(digits_mobilenet().eval(), {"ratio": 0.5, "importance": "bn-scale"}, tmp_path)
    dw = [m for _, m in _convs(pruned) if m.groups > 1]
    assert dw and all(m.groups == m.in_channels == m.out_channels for m in dw)
    assert pruned(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("importance,scope", [("l2", "global"), ("taylor", "layer")])
def test_channel_pruning_importances_and_global_scope(tmp_path, importance, scope):
    from edgesmith.zoo.digits32 import digits_resnet

    model = digits_resnet().eval()
    before = sum(p.numel() for p in model.parameters())
    pruned, ctx = _prune(model, {"ratio": 0.4, "importance": importance, "scope": scope, "round_to": None}, tmp_path)
    assert sum(p.numel() for p in pruned.parameters()) < 0.8 * before
    assert pruned(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_pruned_model_exports_with_smaller_shapes_and_ort_matches_torch(tmp_path):
    import onnx

    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe

    recipe = parse_recipe(
        {
            "model": {"source": "edgesmith.zoo:digits_resnet"},
            "passes": [{"type": "prune_channels", "ratio": 0.5}],
            "stop_after": "export",
            "output_dir": "out",
            "data": {"calibration": None, "evaluation": None},
        }
    )
    pipeline.run(recipe, tmp_path)
    dense, pruned = tmp_path / "out" / "model.onnx", tmp_path / "out" / "model.torch_passes.onnx"
    inits = lambda p: {i.name: list(i.dims) for i in onnx.load(str(p)).graph.initializer}  # noqa: E731
    conv_out = lambda p: sorted(d[0] for d in inits(p).values() if len(d) == 4)  # noqa: E731
    assert conv_out(pruned) == sorted(c // 2 for c in conv_out(dense))
    assert pruned.stat().st_size < dense.stat().st_size / 3
    manifest = __import__("json").loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["parameters"]["architecture_changed"] and manifest["parameters"]["after_torch_passes"] < manifest["parameters"]["float"] / 3
    after = manifest["export_after_torch_passes"]  # ORT on the pruned ONNX against the pruned torch model
    assert after["path"] == "model.torch_passes.onnx" and after["parity_max_abs"] < 1e-4


def test_channel_pruning_bad_input(tmp_path):
    from edgesmith.zoo.digits32 import digits_resnet

    for ratio in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ConfigError, match="ratio must be strictly between 0 and 1"):
            build_pass_config("prune_channels", {"ratio": ratio})
    with pytest.raises(ConfigError, match="ignore names 'nope'"):
        _prune(digits_resnet().eval(), {"ignore": ["nope"]}, tmp_path)
    first = _convs(digits_resnet())[0][0]
    with pytest.raises(ConfigError, match=f"would remove all 16 output channels of {first}"):
        _prune(digits_resnet().eval(), {"ratios": {first: 1.0}, "round_to": None}, tmp_path)


class _NoGrad(torch.nn.Module):
    """Its conv runs under torch.no_grad: the dependency graph cannot see what consumes the conv's channels."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 16, 3)
        self.unused = torch.nn.Linear(3, 3)  # a dead module: never run, no reason to skip
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        with torch.no_grad():
            y = self.conv(x)
        return self.fc(y.mean((2, 3)))


class _Nonzero(torch.nn.Module):
    """A data-dependent op (nonzero) between the conv and the head."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 16, 3)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        y = self.conv(x)
        return self.fc(torch.nonzero(y.flatten(1) > -1e9).float()[:, :1].expand(-1, 16)[: x.shape[0]])


@pytest.mark.parametrize("cls", [_NoGrad, _Nonzero])
def test_untraceable_model_is_skipped_not_half_applied(tmp_path, cls):
    model = cls().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out, ctx = _prune(model, {"ratio": 0.5}, tmp_path, specs=(InputSpec(name="input", shape=["batch", 1, 8, 8], dtype="float32"),))
    assert out is model and ctx.notes[0].startswith("prune_channels SKIPPED") and "loses the trail at conv" in ctx.notes[0]
    assert "unused" not in ctx.notes[0]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_nm_every_group_of_m_has_at_most_n_nonzeros(tmp_path):
    from edgesmith.compress.prune.nm import nm_mask

    torch.manual_seed(0)
    lin, conv = torch.nn.Linear(16, 8), torch.nn.Conv2d(8, 4, 3)
    for layer in (lin, conv):
        mask = nm_mask(layer.weight, 2, 4)
        groups = mask.movedim(1, -1).reshape(-1, 4)
        assert (groups.sum(1) == 2).all()
        kept = (layer.weight.detach().abs() * mask).movedim(1, -1).reshape(-1, 4)
        dropped = (layer.weight.detach().abs() * ~mask).movedim(1, -1).reshape(-1, 4)
        assert (kept.max(1).values >= dropped.max(1).values).all()  # the largest of each group survive
    assert nm_mask(torch.nn.Linear(6, 2).weight, 2, 4) is None  # width 6 is no multiple of 4


def test_prune_nm_pass_on_a_cpu_target_says_no_speed_up(tmp_path):
    from edgesmith.profiles import load_profile
    from edgesmith.zoo.digits32 import digits_resnet

    ctx = _ctx(tmp_path)
    ctx.profile = load_profile("x86-avx512-vnni-ort")
    model = get_pass("prune_nm").apply(digits_resnet().eval(), build_pass_config("prune_nm", {}), ctx)
    for name in ctx.details["prune_nm"]["layers"]:
        w = dict(model.named_modules())[name].weight
        assert ((w.movedim(1, -1).reshape(-1, 4) != 0).sum(1) <= 2).all()
    assert "no faster" in ctx.notes[-1] and "left dense: 0 (input width 1)" in ctx.notes[-1]


def test_magnitude_global_and_per_layer(tmp_path):
    from edgesmith.compress.prune.common import sparsity
    from edgesmith.zoo.digits32 import digits_resnet

    for scope in ("global", "layer"):
        ctx = _ctx(tmp_path)
        model = get_pass("prune_magnitude").apply(digits_resnet().eval(), build_pass_config("prune_magnitude", {"sparsity": 0.8, "scope": scope}), ctx)
        layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        got = sparsity(layers)
        assert got["total"] == pytest.approx(0.8, abs=1e-3)
        if scope == "layer":
            assert all(abs(v - 0.8) < 0.02 for v in got.values())
        assert "no speed" in ctx.notes[-1]
    with pytest.raises(ConfigError, match="gradual prunes during recovery"):
        build_pass_config("prune_magnitude", {"schedule": "gradual"})


def test_cubic_schedule_rises_to_the_final_sparsity():
    from edgesmith.compress.prune.magnitude import cubic

    values = [cubic(s, 100, 0.8) for s in range(0, 101, 10)]
    assert values[0] == 0.0 and values[-1] == pytest.approx(0.8) and all(a <= b for a, b in zip(values, values[1:]))


def test_l0_projection_properties():
    from edgesmith.compress.prune.l0 import l0_project

    g = torch.Generator().manual_seed(0)
    ts = [torch.randn(7, 5, generator=g), torch.randn(13, generator=g), torch.randn(3, 3, 2, generator=g)]
    n = sum(t.numel() for t in ts)
    original = torch.cat([t.flatten() for t in ts]).clone()
    for p in (0.1, 0.37, 0.9):
        work = [t.clone() for t in ts]
        l0_project(work, p)
        flat = torch.cat([t.flatten() for t in work])
        assert int((flat == 0).sum()) == math.ceil(p * n)  # exactly ⌈pN⌉ zeros
        kept = flat != 0
        assert original.abs()[kept].min() >= original.abs()[~kept].max()  # the largest entries are the ones kept
        assert torch.equal(flat[kept], original[kept])  # kept entries are untouched
        again = [t.clone() for t in work]
        l0_project(again, p)
        assert all(torch.equal(a, b) for a, b in zip(again, work))  # idempotent


def test_teddy_edge_scores_symmetric_and_self_loops_kept():
    from edgesmith.compress.prune.edge_scores import drop_edges, edge_scores

    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (3, 4), (4, 5), (2, 5)]
    src = [u for u, v in pairs] + [v for u, v in pairs] + list(range(6))
    dst = [v for u, v in pairs] + [u for u, v in pairs] + list(range(6))
    ei = torch.tensor([src, dst])
    s = edge_scores(ei, 6)
    lookup = {(u, v): float(x) for u, v, x in zip(src, dst, s)}
    assert all(lookup[(u, v)] == pytest.approx(lookup[(v, u)]) for u, v in pairs)  # symmetric
    kept = drop_edges(ei, 6, 0.5)
    ks = set(zip(kept[0].tolist(), kept[1].tolist()))
    assert all((i, i) in ks for i in range(6))  # self-loops survive
    undirected = {(min(u, v), max(u, v)) for u, v in ks if u != v}
    assert len(undirected) == len(pairs) - math.floor(0.5 * len(pairs))
    assert all((v, u) in ks for u, v in ks)  # both directions go together
    dropped = [p for p in pairs if p not in undirected]
    assert max(lookup[p] for p in dropped) <= min(lookup[p] for p in undirected)  # the lowest scores went


def test_l0_pass_trains_with_the_dense_teacher_and_keeps_exact_sparsity(tmp_path):
    from edgesmith.compress.prune.common import sparsity
    from edgesmith.data.sources import load_dataset
    from edgesmith.zoo import pretrained_digits_cnn

    spec = (InputSpec(name="input", shape=["batch", 1, 8, 8], dtype="float32"),)
    data = load_dataset("digits", spec, role="calibration", split="train")
    ctx = _ctx(tmp_path, specs=spec, calibration=data)
    cfg = build_pass_config("prune_l0", {"sparsity": 0.7, "recover": {"loss": "kd", "alpha": 0.1, "steps": 40, "eval_every": 20}})
    model = get_pass("prune_l0").apply(pretrained_digits_cnn(), cfg, ctx)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    n = sum(m.weight.numel() for _, m in layers)
    assert int(sum((m.weight == 0).sum() for _, m in layers)) == math.ceil(0.7 * n)
    assert sparsity(layers)["total"] == pytest.approx(0.7, abs=1e-3) and "teacher" in ctx.notes[-1]
    x = torch.from_numpy(np.concatenate([b.inputs["input"] for b in data.batches])[:256])
    y = torch.from_numpy(np.concatenate([b.labels for b in data.batches])[:256])
    assert float((model(x).argmax(1) == y).float().mean()) > 0.8  # still a digit classifier at 70% sparsity


def test_pipeline_prunes_recovers_and_reports_sizes(tmp_path):
    """Through a recipe: 50% channels with recovery on the bundled digits CNN keeps it a digit classifier and
    runs on ORT; 80% magnitude sparsity deflates the ONNX over 3x smaller (the file a device downloads)."""
    import json

    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe

    steady = [{"metric": "speedup_vs_fp32", "goal": "min", "value": 0.0, "batch": 1}]
    r = parse_recipe(
        {
            "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
            "output_dir": "chan",
            "passes": [{"type": "prune_channels", "ratio": 0.5, "recover": {"steps": 80, "eval_every": 40, "alpha": 0.5}}],
            "targets": [{"profile": "x86-avx512-vnni-ort", "batch_sizes": [1], "budgets": steady}],
        },
        "t",
    )
    pipeline.run(r, tmp_path)
    m = json.loads((tmp_path / "chan" / "manifest.json").read_text())
    t = next(iter(m["targets"].values()))
    assert m["parameters"]["after_torch_passes"] < m["parameters"]["float"] / 2.5
    assert t["metrics"]["top1"] >= t["reference_metrics"]["top1"] - 5.0  # recovered: within 5 points after 80 steps
    assert "recovery" in t["details"]["prune_channels"]
    r = parse_recipe(
        {
            "model": {"source": "edgesmith.zoo:digits_resnet"},
            "output_dir": "sparse",
            "stop_after": "compile",
            "data": {"calibration": None, "evaluation": None},
            "passes": [{"type": "prune_magnitude", "sparsity": 0.8}],
            "targets": [{"profile": "x86-avx512-vnni-ort", "batch_sizes": [1]}],
        },
        "t",
    )
    pipeline.run(r, tmp_path)
    t = next(iter(json.loads((tmp_path / "sparse" / "manifest.json").read_text())["targets"].values()))
    size = t["size"]
    assert size["deflate_ratio"] > 3.0 and size["ratio"] < 1.1  # zeros shrink the download, not the raw file
    gz = [a for a in t["artifacts"] if a["path"].endswith(".gz")]
    compiled = next(a for a in t["artifacts"] if a["path"].endswith("model.onnxruntime.onnx"))
    assert gz and (tmp_path / "sparse" / gz[0]["path"]).is_file() and gz[0]["mb"] < compiled["mb"] / 3


def test_teddy_edge_dropping_on_a_gcn_over_the_digits_graph():
    """TEDDY's edge scores on a real graph: digits as nodes, 8 nearest neighbours as edges, a two-layer GCN
    in plain torch (zoo/graph.py). Half the edges dropped by score: self-loops all kept, accuracy holds."""
    from edgesmith.compress.prune.edge_scores import drop_edges
    from edgesmith.zoo.graph import digits_graph, train_gcn

    g = digits_graph()
    n = len(g["x"])
    _, full = train_gcn(g, g["edge_index"], epochs=150)
    kept = drop_edges(g["edge_index"], n, 0.5)
    src, dst = kept
    assert int((src == dst).sum()) == n  # every self-loop survives
    assert int((src != dst).sum()) == int((g["edge_index"][0] != g["edge_index"][1]).sum()) - 2 * math.floor(
        0.5 * int((g["edge_index"][0] < g["edge_index"][1]).sum())
    )
    _, pruned = train_gcn(g, kept, epochs=150)
    assert full > 85 and pruned > full - 5


def test_gradual_magnitude_keeps_a_checkpoint_at_the_final_sparsity(tmp_path):
    """The cubic schedule with recovery: the model returned is at the final sparsity and still classifies
    (the best-checkpoint rule only looks at steps after the schedule reached it)."""
    from edgesmith.compress.prune.common import sparsity
    from edgesmith.data.sources import load_dataset
    from edgesmith.zoo import pretrained_digits_cnn

    spec = (InputSpec(name="input", shape=["batch", 1, 8, 8], dtype="float32"),)
    data = load_dataset("digits", spec, role="calibration", split="train")
    ctx = _ctx(tmp_path, specs=spec, calibration=data)
    cfg = build_pass_config(
        "prune_magnitude", {"sparsity": 0.8, "schedule": "gradual", "prune_every": 5, "recover": {"steps": 100, "eval_every": 10, "alpha": 0.5}}
    )
    model = get_pass("prune_magnitude").apply(pretrained_digits_cnn(), cfg, ctx)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert sparsity(layers)["total"] == pytest.approx(0.8, abs=1e-3)
    assert ctx.details["prune_magnitude"]["history"] and "best held-out top1" in ctx.details["prune_magnitude"]["recovery"]
    best = float(ctx.details["prune_magnitude"]["recovery"].split("best held-out top1 ")[1].split()[0])
    step = int(ctx.details["prune_magnitude"]["recovery"].split(" at step ")[1].split()[0])
    assert step >= 80 and best > 80


class _Recurrent(torch.nn.Module):
    """conv features -> a 2-layer bidirectional recurrent layer -> Linear, the CRNN layout."""

    def __init__(self, kind: str):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.rnn = getattr(torch.nn, kind)(16, 32, num_layers=2, bidirectional=True, batch_first=True)
        self.head = torch.nn.Linear(64, 7)

    def forward(self, x):
        f = self.conv(x).mean(dim=2).permute(0, 2, 1)
        return self.head(self.rnn(f)[0])


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_recurrent_hidden_units_that_nothing_reads_go_and_the_outputs_stay_exact(kind):
    """Units whose outgoing weights are zero (recurrent, next layer, the Linear reading the sequence) carry
    nothing: removing exactly those, in every layer and direction, must leave the outputs unchanged; the
    unit indices differ per layer and direction, so a slice of the wrong axis or offset shows."""
    from edgesmith.compress.prune import recurrent

    torch.manual_seed(0)
    model = _Recurrent(kind).eval()
    rnn, h = model.rnn, 32
    dead = {(layer, d): torch.randperm(h)[: h // 2] for layer in range(2) for d in range(2)}
    with torch.no_grad():
        for (layer, d), idx in dead.items():
            getattr(rnn, f"weight_hh_l{layer}" + ("_reverse" if d else ""))[:, idx] = 0
            cols = idx + d * h
            reader = [model.head.weight] if layer == 1 else [rnn.weight_ih_l1, rnn.weight_ih_l1_reverse]
            for w in reader:
                w[:, cols] = 0
    x = torch.randn(3, 1, 8, 12)
    ref = model(x)
    assert recurrent.prune(model, 0.5, None) == ({"rnn": [32, 16]}, {})
    assert rnn.hidden_size == 16 and rnn.weight_hh_l1_reverse.shape[1] == 16 and model.head.in_features == 32
    torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-5)


def test_recurrent_ratio_in_prune_channels_and_layers_it_cannot_cut(tmp_path):
    from edgesmith.compress.count import count_macs
    from edgesmith.compress.prune import recurrent

    model = _Recurrent("LSTM").eval()
    spec = (InputSpec(name="input", shape=["batch", 1, 8, 12], dtype="float32"),)
    x = torch.randn(2, 1, 8, 12)
    out, ctx = _prune(model, {"ratio": 0.5, "recurrent_ratio": 0.75, "round_to": 4}, tmp_path, specs=spec)
    assert ctx.details["prune_channels"]["recurrent_hidden"] == {"rnn": [32, 8]}
    assert out.rnn.hidden_size == 8 and out(x).shape == model(x).shape and model.rnn.hidden_size == 32  # the original untouched
    assert count_macs(out, (x[:1],)) < count_macs(model, (x[:1],)) / 4
    with pytest.raises(ConfigError, match="recurrent_ratio must be in"):
        build_pass_config("prune_channels", {"recurrent_ratio": 1.0})

    class UsesState(_Recurrent):
        def forward(self, x):
            seq, (h, _) = self.rnn(self.conv(x).mean(dim=2).permute(0, 2, 1))
            return self.head(seq) + h[-1].sum()

    class Activated(_Recurrent):
        def forward(self, x):
            return self.head(torch.relu(self.rnn(self.conv(x).mean(dim=2).permute(0, 2, 1))[0]))

    found, skipped = recurrent.readers(UsesState("LSTM"))
    assert not found and skipped == {"rnn": "its final states are used"}
    out, ctx = _prune(Activated("LSTM").eval(), {"ratio": 0.5, "recurrent_ratio": 0.5}, tmp_path, specs=spec)
    why = "keeps its hidden size: its sequence output goes to something other than a Linear layer"
    assert out.rnn.hidden_size == 32 and any(why in n for n in ctx.notes), ctx.notes
