"""A device without torch: a virtual environment with only the core and ONNX Runtime (as pyproject
declares them; tests/device_env.py) runs `bench` and `validate` on a run directory built here."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.device_env import device_python as cached_device_python

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def device_python() -> Path:
    py = cached_device_python()  # the core and ONNX Runtime only, built once and kept between test runs
    assert subprocess.run([str(py), "-c", "import torch"], capture_output=True).returncode != 0  # really no torch
    return py


def _device(py: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}  # the package from source, deps from the venv
    return subprocess.run([str(py), "-m", "edgesmith", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_device_validates_a_predevice_run_without_torch(device_python, device_run, tmp_path):
    built = json.loads((device_run / "manifest.json").read_text())["targets"]["x86-avx512-vnni-ort"]
    result = _device(device_python, "validate", str(device_run), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    here = json.loads(result.stdout)["targets"]["x86-avx512-vnni-ort"]
    # same artifact, same runtime: accuracy reproduces exactly; fidelity against the stored float outputs
    assert here["metrics"]["top1"] == pytest.approx(built["metrics"]["top1"])
    assert here["reference_metrics"]["top1"] == pytest.approx(built["reference_metrics"]["top1"])
    assert here["metrics"]["cosine"] == pytest.approx(built["metrics"]["cosine"], abs=1e-6)
    assert here["metrics"]["speedup_vs_fp32@1"] > 0
    assert {v["metric"] for v in here["verdicts"]} >= {"top1", "output_fidelity", "latency_p90_ms"}


def test_device_benches_a_prebuilt_artifact_without_torch(device_python, device_run, tmp_path):
    artifact = device_run / "x86-avx512-vnni-ort" / "model.onnxruntime.onnx"
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
