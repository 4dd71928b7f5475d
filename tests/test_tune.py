"""`edgesmith tune`: searches until the accuracy budget holds, and always writes the best it found."""

from __future__ import annotations

import json

import yaml

RECIPE = {
    "name": "tune-digits",
    "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
    "inputs": [{"name": "input", "shape": ["batch", 1, 8, 8]}],
    # a deliberately poor start: 16 calibration samples clipped at their 90.5th percentile, per-tensor
    "data": {"calibration": {"source": "digits", "split": "train", "samples": 16}, "evaluation": {"source": "digits", "split": "test"}},
    "passes": [{"type": "ptq_int8", "calibration": "percentile", "percentile": 90.5, "per_channel": False}],
    "bench": {"iterations": 10},
    "output_dir": "tuned",
}


def _write(tmp_path, cosine_min: float, **extra) -> str:
    recipe = dict(
        RECIPE,
        targets=[
            {
                "profile": "x86-avx512-vnni-ort",
                "batch_sizes": [1],
                "budgets": [{"metric": "top1", "goal": "max-degradation", "value": 0.2}, {"metric": "cosine", "goal": "min", "value": cosine_min}],
            }
        ],
        **extra,
    )
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    return "r.yaml"


def test_tune_finds_settings_within_budget(cli, tmp_path):
    r = cli("tune", _write(tmp_path, 0.999))
    assert r.code == 0, r.stderr
    result = json.loads((tmp_path / "tuned" / "tune.json").read_text())
    first, best = result["candidates"][0], result["best"]
    assert not first["feasible"] and "top1 drop" in "; ".join(first["gaps"])  # the recipe's own settings miss the budget
    assert best["feasible"] and best["metrics"]["top1"] >= 99.0
    assert best["params"] != first["params"]
    tuned = yaml.safe_load((tmp_path / "tuned" / "tuned.yaml").read_text())
    assert tuned["passes"][0] == {"type": "ptq_int8", **best["params"]}
    manifest = json.loads((tmp_path / "tuned" / "manifest.json").read_text())
    assert manifest["verdict"] in ("pass", "inconclusive")  # inconclusive: a latency budget this busy machine could not decide
    import optuna  # the engine's study store: every candidate, as the search stores its trials

    study = optuna.load_study(study_name="edgesmith-tune", storage=f"sqlite:///{tmp_path / 'tuned' / 'study.db'}")
    assert [t.user_attrs["params"] for t in study.get_trials()] == [c["params"] for c in result["candidates"]]


def test_unreachable_budget_still_writes_the_best_and_states_the_gap(cli, tmp_path):
    r = cli("tune", _write(tmp_path, 0.999999))
    assert r.code == 1
    assert len(r.error_lines) == 1 and "no setting met the budget" in r.stderr and "below 0.999999" in r.stderr
    result = json.loads((tmp_path / "tuned" / "tune.json").read_text())
    stages = [c["stage"] for c in result["candidates"]]
    assert {"calibration", "granularity", "float layers"} <= set(stages)  # every stage was tried
    assert not result["best"]["feasible"] and result["best"]["gaps"]
    assert (tmp_path / "tuned" / "manifest.json").is_file() and (tmp_path / "tuned" / "tuned.yaml").is_file()
    assert "NO setting within budget" in (tmp_path / "tuned" / "tune.md").read_text()


def test_tune_refuses_two_targets(cli, tmp_path):
    recipe = dict(RECIPE, targets=["x86-avx512-vnni-ort", "x86-avx512-vnni-ov"])
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    r = cli("tune", "r.yaml")
    assert r.code == 2 and "tune works on one target" in r.stderr and not (tmp_path / "tuned").exists()
