"""A device without torch: a fresh virtual environment with only the core and the `ort` extra
(as pyproject declares them) runs `bench` and `validate` on a run directory built here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import NO_SPEEDUP_BUDGET, ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def device_python(tmp_path_factory) -> Path:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["ort"]
    venv = tmp_path_factory.mktemp("device") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "-c", str(ROOT / "constraints.txt"), *requirements], check=True, capture_output=True, text=True)
    assert subprocess.run([str(py), "-c", "import torch"], capture_output=True).returncode != 0  # really no torch
    return py


@pytest.fixture(scope="module")
def built_run(tmp_path_factory) -> Path:
    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe

    out = tmp_path_factory.mktemp("build") / "run"
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
    return out


def _device(py: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}  # the package from source, deps from the venv
    return subprocess.run([str(py), "-m", "edgesmith", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_device_validates_a_prebuilt_run_without_torch(device_python, built_run, tmp_path):
    built = json.loads((built_run / "manifest.json").read_text())["targets"]["x86-avx512-vnni-ort"]
    result = _device(device_python, "validate", str(built_run), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    here = json.loads(result.stdout)["targets"]["x86-avx512-vnni-ort"]
    # same artifact, same runtime: accuracy reproduces exactly; fidelity against the stored float outputs
    assert here["metrics"]["top1"] == pytest.approx(built["metrics"]["top1"])
    assert here["reference_metrics"]["top1"] == pytest.approx(built["reference_metrics"]["top1"])
    assert here["metrics"]["cosine"] == pytest.approx(built["metrics"]["cosine"], abs=1e-6)
    assert here["metrics"]["speedup_vs_fp32@1"] > 0
    assert {v["metric"] for v in here["verdicts"]} >= {"top1", "output_fidelity", "latency_p90_ms"}


def test_device_benches_a_prebuilt_artifact_without_torch(device_python, built_run, tmp_path):
    artifact = built_run / "x86-avx512-vnni-ort" / "model.onnxruntime.onnx"
    result = _device(device_python, "bench", str(artifact), "--iterations", "20", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["p50_ms"] > 0


def test_building_on_the_device_says_which_extra_is_missing(device_python, tmp_path):
    result = _device(device_python, "demo", cwd=tmp_path)
    assert result.returncode == 2
    assert "torch is not installed" in result.stderr and "edgesmith[build]" in result.stderr


def test_a_directory_that_is_not_a_run_is_refused(tmp_path):
    from edgesmith.device import validate_bundle
    from edgesmith.errors import InputError

    with pytest.raises(InputError, match="has no manifest.json"):
        validate_bundle(tmp_path)
