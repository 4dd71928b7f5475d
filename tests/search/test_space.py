"""The search space a recipe marks: parsing, conditional choices, checks before any trial runs."""

from __future__ import annotations

import pytest

from edgesmith.errors import ConfigError
from edgesmith.search.space import check_choices, parse_space


def test_nothing_searchable_is_refused_with_a_hint():
    with pytest.raises(ConfigError) as e:
        parse_space([{"type": "ptq_int8", "calibration": "minmax"}])
    assert "nothing to search" in e.value.message and "{search:" in e.value.hint
    with pytest.raises(ConfigError, match="optimize's preset"):
        parse_space("auto")


@pytest.mark.parametrize(
    "mark, needle",
    [
        ({"search": []}, "lists no choices"),
        ({"search": [1, 1]}, "listed twice"),
        ({"search": {"low": 0.5, "high": 0.2}}, "low < high"),
        ({"search": {"low": 0.1, "high": 0.5, "step": -1}}, "step must be a positive"),
        ({"search": {"low": 0.1, "high": 0.5, "what": 1}}, "a range is"),
        ({"search": "minmax"}, "takes a list of choices or a range"),
        ({"search": [[1, 2]]}, "must be a number, string"),
    ],
)
def test_malformed_marks_are_one_line_errors(mark, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_space([{"type": "prune_channels", "ratio": mark}])


def test_an_optional_pass_makes_its_own_choices_conditional():
    sp = parse_space([{"type": "ptq_int8", "enabled": {"search": [True, False]}, "calibration": {"search": ["minmax", "entropy"]}}])
    grid = sp.grid()
    assert len(grid) == 3  # off once, not once per calibration it would not use
    combos = [sp.concrete(v) for v in grid]
    assert sorted(map(str, combos)) == sorted(map(str, [[{"type": "ptq_int8", "calibration": "minmax"}], [{"type": "ptq_int8", "calibration": "entropy"}], []]))
    assert sp.label(grid[combos.index([])]) == "ptq_int8=off"


def test_whole_pass_alternatives_with_nested_choices():
    sp = parse_space([{"search": [{"type": "prune_channels", "ratio": {"search": [0.3, 0.5]}}, {"type": "binarize"}, None]}, {"type": "ptq_int8"}])
    combos = [sp.concrete(v) for v in sp.grid()]
    assert sorted(map(str, combos)) == sorted(
        map(
            str,
            [
                [{"type": "prune_channels", "ratio": 0.3}, {"type": "ptq_int8"}],
                [{"type": "prune_channels", "ratio": 0.5}, {"type": "ptq_int8"}],
                [{"type": "binarize"}, {"type": "ptq_int8"}],
                [{"type": "ptq_int8"}],
            ],
        )
    )


def test_the_grid_varies_the_first_pass_fastest_so_a_wave_never_builds_one_prefix_twice():
    sp = parse_space([{"type": "prune_channels", "ratio": {"search": [0.3, 0.5]}}, {"type": "ptq_int8", "enabled": {"search": [True, False]}}])
    ratios = [v["passes[0]/ratio"] for v in sp.grid()]
    assert ratios == [0.3, 0.5, 0.3, 0.5]  # two workers build 0.3 and 0.5; the next wave finds both in the cache


def test_ranges_grid_with_a_step_and_refuse_without():
    sp = parse_space([{"type": "prune_channels", "ratio": {"search": {"low": 0.2, "high": 0.6, "step": 0.2}}}])
    assert [v["passes[0]/ratio"] for v in sp.grid()] == [0.2, 0.4, 0.6]
    sp = parse_space([{"type": "prune_channels", "ratio": {"search": {"low": 0.2, "high": 0.6}}}])
    assert sp.size() is None
    with pytest.raises(ConfigError, match="needs a step"):
        sp.grid()


def test_every_choice_is_validated_before_any_trial():
    from edgesmith.recipe import parse_recipe

    def validate(passes):
        parse_recipe({"model": {"source": "edgesmith.zoo:pretrained_digits_cnn"}, "passes": passes})

    good = parse_space([{"type": "ptq_int8", "calibration": {"search": ["minmax", "entropy"]}}])
    check_choices(good, validate)
    bad = parse_space([{"type": "ptq_int8", "calibration": {"search": ["minmax", "entropi"]}}])
    with pytest.raises(ConfigError, match="calibration='entropi' is not valid"):
        check_choices(bad, validate)


@pytest.mark.parametrize(
    "rng, expected",
    [
        ({"low": 2, "high": 8, "step": 4}, [2, 6]),  # rounding the count once gave 2, 6, 10: past the range
        ({"low": 0.5, "high": 1.0, "step": 0.3}, [0.5, 0.8]),  # and a sparsity of 1.1
        ({"low": 0.2, "high": 0.6, "step": 0.1}, [0.2, 0.3, 0.4, 0.5, 0.6]),
        ({"low": 4, "high": 12, "step": 4}, [4, 8, 12]),
    ],
)
def test_a_stepped_range_never_leaves_its_bounds_and_is_described_as_it_is(rng, expected):
    space = parse_space([{"type": "ptq_int8", "percentile": {"search": rng}}])
    (param,) = space.params
    assert param.grid() == pytest.approx(expected)
    assert f"({len(expected)} values)" in param.describe()


def test_a_tiny_step_is_refused_before_anything_is_allocated():
    space = parse_space([{"type": "prune_magnitude", "sparsity": {"search": {"low": 0.0, "high": 1.0, "step": 1e-12}}}])
    with pytest.raises(ConfigError, match="more than 10000"):
        space.params[0].grid()
    assert space.size() is None or space.size() <= 10_000
