"""Shared fixtures: the real console script, tiny models, and a digits model exported once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

# `make test` runs two pytest workers on two cores: a timing taken beside the other worker is busy by
# design, and the 10 s wait for a quiet machine (runtime.contention) and the two timings again after it
# would only add minutes (they were ~10 s of each full run). The busy record and its verdicts are
# unchanged; runs and their children inherit the setting; the tests of the retry set their own.
os.environ.setdefault("EDGESMITH_QUIET_WAIT_S", "1")
os.environ.setdefault("EDGESMITH_BUSY_RETRIES", "0")


def edgesmith_exe() -> str:
    exe = Path(sys.executable).with_name("edgesmith")
    return str(exe) if exe.exists() else shutil.which("edgesmith")


class CliResult:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.code = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("edgesmith: error:")]


# An environment that changes what an interpreter imports at start-up needs a new interpreter.
_STARTUP_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE", "PYTHONSAFEPATH", "VIRTUAL_ENV", "LD_PRELOAD", "LD_LIBRARY_PATH")


@pytest.fixture(scope="session")
def _forkserver():
    """A process that imported torch, onnx and onnxruntime once; each ``cli`` call is a fork of it."""
    import multiprocessing

    from tests import _cli_fork

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_cli_fork.PRELOAD)
    return ctx


@pytest.fixture
def cli(tmp_path, _forkserver):
    """Run the ``edgesmith`` entry point as its own process; returns exit code and output. A fork of a
    pre-imported server (tests/_cli_fork.py) unless the call's environment needs a new interpreter."""

    def run(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300) -> CliResult:
        full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
        argv = list(map(str, args))
        if any(full_env.get(k) != os.environ.get(k) for k in _STARTUP_ENV):
            proc = subprocess.run([edgesmith_exe(), *argv], capture_output=True, text=True, cwd=cwd or tmp_path, env=full_env, timeout=timeout)
            return CliResult(proc)
        return _forked(_forkserver, argv, Path(cwd or tmp_path), full_env, timeout)

    return run


def _forked(ctx, argv: list[str], cwd: Path, env: dict, timeout: int) -> CliResult:
    import tempfile

    from tests import _cli_fork

    with tempfile.TemporaryDirectory(prefix="edgesmith-cli-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        proc = ctx.Process(target=_cli_fork.run, args=(argv, str(cwd), env, str(out), str(err)))
        proc.start()
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
            raise subprocess.TimeoutExpired(["edgesmith", *argv], timeout)
        text = {p: p.read_bytes().decode("utf-8", "backslashreplace") if p.exists() else "" for p in (out, err)}
        return CliResult(subprocess.CompletedProcess(["edgesmith", *argv], proc.exitcode, text[out], text[err]))


@pytest.fixture(scope="session")
def digits_onnx(tmp_path_factory) -> Path:
    """The bundled digits CNN exported to ONNX once per session (through the pipeline)."""
    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe

    def build(folder: Path) -> None:
        out = folder / "run"
        pipeline.run(parse_recipe({"model": {"source": "edgesmith.zoo:pretrained_digits_cnn"}, "stop_after": "export", "output_dir": str(out)}), out)

    return built_once(tmp_path_factory, "digits-export", build) / "run" / "model.onnx"


@pytest.fixture(scope="session")
def digits_test():
    from edgesmith.data.digits import load_digits_split

    return load_digits_split("test")


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A read-only fixture's folder, built once for the whole run whichever pytest-xdist worker asks first (the
    other waits on a lock, then reads the same files): a session fixture is otherwise built once per worker, and
    the two workers of `make test` paid each of these twice. ``build(folder)`` fills the folder."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # NOTE: the run's folder, shared by its workers
    target = root / f"built-once-{name}"
    with FileLock(str(target) + ".lock"):
        if not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)  # a build that failed half-way in another worker
            target.mkdir()
            build(target)
            (target / ".complete").touch()
    return target


def read_manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# A speed-up budget of >= 1 on a 50 us model is judged on timing noise (its verdict can flip between
# identical runs); tests whose subject is not speed use this override, so they can expect one exit code.
NO_SPEEDUP_BUDGET = [{"metric": "speedup_vs_fp32", "goal": "min", "value": 0.0, "batch": 1}]


@pytest.fixture(scope="session")
def steady_profile(tmp_path_factory) -> Path:
    """x86-avx512-vnni-ort as a file, without the speed-up budget (for commands that take no recipe)."""
    import yaml

    from edgesmith.profiles import load_profile

    data = load_profile("x86-avx512-vnni-ort").model_dump(mode="json")
    data["budgets"] = [g for g in data["budgets"] if g["metric"] != "speedup_vs_fp32"]
    path = tmp_path_factory.mktemp("profiles") / "x86-avx512-vnni-ort-steady.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def device_run(tmp_path_factory) -> Path:
    """A run of the digits CNN (static INT8, one x86 ONNX Runtime target) for the device side to validate."""
    return built_once(tmp_path_factory, "device-build", lambda folder: _device_run(folder / "run")) / "run"


def _device_run(out: Path) -> None:
    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe

    recipe = parse_recipe(
        {
            "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
            "data": {"calibration": {"source": "digits", "samples": 256}, "evaluation": {"source": "digits", "split": "test"}},
            "passes": [{"type": "ptq_int8"}],
            "targets": [{"profile": "x86-avx512-vnni-ort", "batch_sizes": [1], "budgets": NO_SPEEDUP_BUDGET}],
            "bench": {"warmup": 2, "iterations": 20},
            "output_dir": str(out),
        }
    )
    pipeline.run(recipe, out.parent)
