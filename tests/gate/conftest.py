"""Real runs of the digits recipe to gate: a baseline, the same recipe again, and a deliberately worse
quantization setting; plus a helper that copies a run and edits its manifest (synthetic cases)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import built_once


def recipe(out: Path, name: str = "gate-digits", **ptq) -> dict:
    return {
        "name": name,
        "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
        "inputs": [{"name": "input", "shape": ["batch", 1, 8, 8]}],
        "data": {"calibration": {"source": "digits", "split": "train", "samples": 256}, "evaluation": {"source": "digits", "split": "test"}},
        "metric": "top1",
        "passes": [{"type": "ptq_int8", **ptq}],
        "targets": ["x86-avx512-vnni-ort"],
        "bench": {"iterations": 60},
        "output_dir": str(out),
    }


def _run(out: Path, **kw) -> Path:
    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe

    pipeline.run(parse_recipe(recipe(out, **kw), "test"), out)
    return out


@pytest.fixture(scope="session")
def gate_runs(tmp_path_factory) -> dict[str, Path]:
    def build(root: Path) -> None:
        _run(root / "base", calibration="minmax")
        _run(root / "again", calibration="minmax")
        # clipping activations at their 90.5th percentile from 16 samples: ~3 points of top-1 lost
        _run(root / "worse", calibration="percentile", percentile=90.5, samples=16, per_channel=False)

    root = built_once(tmp_path_factory, "gate-runs", build)
    return {name: root / name for name in ("base", "again", "worse")}


def reseal(path: Path, data: dict) -> None:
    """A synthetic baseline edgesmith could have written: edited, then sealed again with its digest."""
    from edgesmith.outputs import manifest_digest

    data["digest"] = manifest_digest(data)
    path.write_text(json.dumps(data))


@pytest.fixture
def variant(tmp_path) -> Callable[[Path, Callable[[dict], None]], Path]:
    """Copy a run directory and edit its manifest in place, re-sealed with its digest (a synthetic run
    edgesmith could have written); returns the copy. Tampering without re-sealing: tests/gate/test_tamper.py."""

    def make(src: Path, edit: Callable[[dict], None], name: str = "variant") -> Path:
        dest = tmp_path / name
        shutil.copytree(src, dest)
        manifest = json.loads((dest / "manifest.json").read_text())
        edit(manifest)
        from edgesmith.outputs import manifest_digest

        manifest["digest"] = manifest_digest(manifest)  # a synthetic run, re-sealed as if edgesmith wrote it
        (dest / "manifest.json").write_text(json.dumps(manifest))
        return dest

    return make


@pytest.fixture
def baseline(cli, gate_runs, tmp_path) -> Path:
    path = tmp_path / "ci" / "baseline.json"
    r = cli("baseline", "save", gate_runs["base"], "--to", path)
    assert r.code == 0, r.stderr
    return path
