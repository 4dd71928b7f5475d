"""The samplers are Optuna's, with the target's budgets as constraints; a study resumes from its database."""

from __future__ import annotations

import pytest

from edgesmith.errors import ConfigError
from edgesmith.search.space import parse_space
from edgesmith.search.study import make_sampler, open_study, orphans, resolve_sampler

SPACE = [
    {"type": "prune_channels", "ratio": {"search": {"low": 0.1, "high": 0.9}}},
    {"type": "ptq_int8", "enabled": {"search": [True, False]}, "calibration": {"search": ["minmax", "entropy"]}},
]


@pytest.mark.parametrize("name, cls", [("tpe", "TPESampler"), ("nsga2", "NSGAIISampler"), ("random", "RandomSampler")])
def test_model_based_samplers_propose_within_the_space_and_read_the_constraints(tmp_path, name, cls):
    sp = parse_space(SPACE)
    sampler = make_sampler(name, seed=0, population=2)
    assert type(sampler).__name__ == cls
    study = open_study(f"sqlite:///{tmp_path / 'study.db'}", "s", sampler, None, {"edgesmith_space": "x"})
    seen_constraints = []
    for _ in range(6):
        t = study.ask()
        v = sp.suggest(t)
        assert 0.1 <= v["passes[0]/ratio"] <= 0.9
        assert ("passes[1]/calibration" in v) == v["passes[1]/enabled"]  # asked only when the pass runs
        t.set_constraint("0:top1", 0.5 if v["passes[0]/ratio"] > 0.6 else 0.0)
        study.tell(t, [99.0 - 10 * v["passes[0]/ratio"], 1.0 - v["passes[0]/ratio"], 1.0])
        seen_constraints.append({k: x for k, x in study.trials[-1].system_attrs.items() if k.startswith("constraints:")})
    assert len(study.trials) == 6 and all(len(c) == 1 for c in seen_constraints)
    from optuna.study._constrained_optimization import _get_feasible_trials

    feasible = _get_feasible_trials(study.trials[:6])  # what the samplers see
    assert {t.number for t in feasible} == {t.number for t in study.trials[:6] if t.params["passes[0]/ratio"] <= 0.6}
    # a trial asked and never told (its process died) is found on reopening, under its number
    lost = study.ask()
    sp.suggest(lost)
    again = open_study(f"sqlite:///{tmp_path / 'study.db'}", "s", make_sampler(name, 0, 2), None, {})
    assert [t.number for t in orphans(again)] == [lost.number]


def test_auto_takes_the_grid_when_it_fits_and_tpe_when_not():
    assert resolve_sampler("auto", 12, None) == "grid"
    assert resolve_sampler("auto", 12, 6) == "tpe"
    assert resolve_sampler("auto", None, 50) == "tpe"  # a range without a step: no grid
    with pytest.raises(ConfigError, match="needs every range to have a step"):
        resolve_sampler("grid", None, 10)
    with pytest.raises(ConfigError, match="unknown sampler"):
        resolve_sampler("bayes", 4, 4)


def test_a_study_url_that_cannot_be_opened_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="cannot open the study database"):
        open_study("notadb://x", "s", make_sampler("random", 0, 1), None, {})
