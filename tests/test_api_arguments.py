"""The Python API refuses what the command line refuses: every bounded argument, checked before any work.

Before this, ``bench(threads=100000)`` hung in ONNX Runtime, ``duration_s=nan`` never ended, ``threads=0`` ran
with the default, ``quantize(target=[])`` passed having validated nothing, ``search(trials=0)`` was accepted and
``export(opset="x")`` failed inside the exporter."""

import inspect
import math

import numpy as np
import pytest
import typer

import edgesmith.api as api
from edgesmith.api.arguments import BOUNDS, RULES
from edgesmith.errors import ConfigError

MISSING = "no-such-model.onnx"  # if a check did not fire first, the error would be 'not found', not the one matched
RECIPE = {"model": {"source": "edgesmith.zoo:pretrained_digits_cnn"}, "passes": [{"type": "ptq_int8", "calibration": {"search": ["minmax", "entropy"]}}]}

HOSTILE = [
    (api.bench, {"threads": 100_000}, r"threads must be a whole number in \[1, 256\], got 100000"),
    (api.bench, {"threads": 0}, "threads must be"),
    (api.bench, {"threads": 1.5}, "threads must be a whole number"),
    (api.bench, {"threads": True}, "threads must be a whole number"),
    (api.bench, {"iterations": -5}, "iterations must be"),
    (api.bench, {"warmup": -1}, r"warmup must be a whole number in \[0, "),
    (api.bench, {"duration_s": math.nan}, "duration_s must be a number"),
    (api.bench, {"duration_s": math.inf}, "duration_s must be a number"),
    (api.bench, {"batches": [0]}, "batches item must be"),
    (api.bench, {"batches": 4}, "batches must be a non-empty list"),
    (api.bench, {"batches": []}, "batches must be a non-empty list"),
    (api.bench, {"batches": [1, 10**9]}, r"batches item .* got 1000000000 \(hint: the same bounds as --batch "),
    (api.compare, {"confidence": 1.5}, "confidence must be"),
    (api.compare, {"rounds": 0}, "rounds must be"),
    (api.compare, {"batch": 0}, "batch must be"),
    (api.compare, {"threads": 10**6}, "threads must be"),
    (api.quantize, {"target": []}, "target must be a profile name or a non-empty list"),
    (api.quantize, {"target": 5}, "target must be"),
    (api.quantize, {"target": ["x86-avx512-vnni-ort", None]}, "target must be"),
    (api.compile, {"target": ""}, "target must be"),
    (api.export, {"opset": "x"}, r"opset must be a whole number in \[13, 23\], got 'x'"),
    (api.export, {"opset": 99}, "opset must be"),
    (api.export, {"opset": 17.5}, "opset must be"),
    (api.optimize, {"train_budget": -3}, "train_budget must be"),
    (api.optimize, {"train_budget": 2.5}, "train_budget must be"),
    (api.optimize, {"train_budget": "-5m"}, "train_budget '-5m' is not a duration"),
]


@pytest.mark.parametrize("fn, kwargs, message", HOSTILE, ids=lambda v: getattr(v, "__name__", None) or str(v)[:30])
def test_a_bad_argument_is_one_config_error_before_any_work(fn, kwargs, message):
    first = (MISSING, MISSING) if fn is api.compare else (MISSING,)
    with pytest.raises(ConfigError, match=message):
        fn(*first, **kwargs)


@pytest.mark.parametrize("kwargs", [{"trials": 0}, {"trials": 1.5}, {"workers": -1}, {"seed": -1}, {"seed": 2**40}])
def test_search_counts_are_bounded_like_the_command_line(tmp_path, kwargs):
    with pytest.raises(ConfigError, match=f"{next(iter(kwargs))} must be a whole number"):
        api.search(RECIPE, out_dir=tmp_path / "s", dry_run=True, **kwargs)
    assert not (tmp_path / "s").exists()


def test_pass_for_mode_refuses_zero_samples_instead_of_taking_all():
    with pytest.raises(ConfigError, match="samples must be a whole number >= 1, got 0"):
        api.pass_for_mode("static", samples=0)
    assert api.pass_for_mode("static", samples=np.int64(64))["samples"] == 64  # numpy integers are whole numbers


def _cli_ranges():
    """(command, option name, lo, hi) of every bounded option of every command."""
    from edgesmith.cli import app

    def walk(cmd, path):
        if hasattr(cmd, "commands"):  # a group (typer vendors its own click: duck-typed)
            for name, sub in cmd.commands.items():
                yield from walk(sub, f"{path} {name}")
            return
        for p in cmd.params:
            if getattr(p, "min", None) is not None or getattr(p, "max", None) is not None:
                yield path.strip(), p.name, p.min, p.max, p.multiple

    return list(walk(typer.main.get_command(app), ""))


def test_the_api_bounds_are_the_command_lines_bounds():
    aliases = {"duration": "duration_s"}
    checked = 0
    for command, name, lo, hi, multiple in _cli_ranges():
        api_name = "batches" if (name == "batch" and multiple) else aliases.get(name, name)
        if api_name not in BOUNDS:
            continue
        b = BOUNDS[api_name]
        assert (b.lo, b.hi) == (lo, math.inf if hi is None else hi), (
            f"`edgesmith {command} --{name}` is bounded [{lo}, {hi}], the API's {api_name} [{b.lo}, {b.hi}]"
        )
        checked += 1
    assert checked >= 12  # threads, batch, warmup, iterations, duration, rounds, per_round, confidence, trials, workers, seed, opset, samples


def test_every_numeric_argument_of_the_public_api_has_a_rule():
    durations = {"time_budget_s", "time_budget"}  # parsed by units.parse_duration (NaN, 0, negatives refused)
    for name in api.__all__:
        fn = getattr(api, name)
        if not inspect.isfunction(fn):
            continue
        for p in inspect.signature(fn).parameters.values():
            annotation = str(p.annotation)
            if ("int" in annotation or "float" in annotation) and p.name not in durations:
                assert p.name in RULES, f"edgesmith.{name}({p.name}: {annotation}) is not checked"
                assert getattr(fn, "__wrapped__", None) is not None, f"edgesmith.{name} is not @checked"


@pytest.mark.parametrize("fn", [api.quantize, api.validate, api.optimize])
def test_no_toy_data_stands_in_for_a_users_model(fn, digits_onnx, tmp_path):
    kwargs = {"data": None} if fn is api.validate else {}
    with pytest.raises(ConfigError, match="the model needs data to calibrate and evaluate with"):
        fn(digits_onnx, out_dir=tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_a_recipe_with_no_targets_is_refused_unless_it_stops_before_compiling():
    from edgesmith.recipe import parse_recipe

    with pytest.raises(ConfigError, match="targets: the list is empty, so there is nothing to validate for"):
        parse_recipe({"model": {"source": "edgesmith.zoo:pretrained_digits_cnn"}, "targets": []}, "recipe")
    assert parse_recipe({"model": {"source": "m.onnx"}, "targets": [], "stop_after": "export"}, "recipe").targets == []
