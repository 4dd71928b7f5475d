"""The CI recipes in docs/ci-gate.md, GitHub Actions and GitLab CI: well formed, and their commands run.

Both run the same edgesmith commands; the test runs them, as written, in a project folder holding the
recipe and a baseline saved from it (as a user commits them), with edgesmith on PATH. The actions
around the commands (checkout, cache, JUnit reporter, comment, upload) are the CI services' own."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from tests.conftest import edgesmith_exe
from tests.gate.conftest import recipe

ROOT = Path(__file__).resolve().parents[2]


def _blocks() -> list[dict]:
    doc = (ROOT / "docs" / "ci-gate.md").read_text()
    return [yaml.safe_load(b.split("```", 1)[0]) for b in doc.split("```yaml\n")[1:] if "edgesmith check" in b.split("```", 1)[0]]


def _github_and_gitlab() -> tuple[dict, dict]:
    github = next(b for b in _blocks() if "jobs" in b)
    gitlab = next(b for b in _blocks() if "edgesmith-gate" in b)
    return github, gitlab["edgesmith-gate"]


def test_the_workflows_are_well_formed_and_keep_the_gates_files():
    github, gitlab = _github_and_gitlab()
    on = github.get("on", github.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert "pull_request" in on
    steps = github["jobs"]["gate"]["steps"]
    assert all("uses" in s or "run" in s for s in steps)
    uses = {s.get("uses", "").split("@")[0]: s for s in steps}
    assert "hashFiles('constraints.txt')" in uses["actions/cache"]["with"]["key"]  # the venv is cached
    assert uses["mikepenz/action-junit-report"]["with"]["report_paths"] == "out/gate/junit.xml"
    assert uses["marocchino/sticky-pull-request-comment"]["with"]["path"] == "out/gate/summary.md"
    upload = uses["actions/upload-artifact"]
    assert upload["if"] == "always()" and "report.html" in upload["with"]["path"] and "junit.xml" in upload["with"]["path"]
    assert gitlab["artifacts"]["when"] == "always" and gitlab["artifacts"]["reports"]["junit"] == "out/gate/junit.xml"
    assert gitlab["cache"]["paths"] == [".venv/"] and gitlab["rules"][0]["if"] == '$CI_PIPELINE_SOURCE == "merge_request_event"'


def test_the_workflows_commands_run_and_gate(tmp_path, gate_runs):
    github, gitlab = _github_and_gitlab()
    gh = [s["run"] for s in github["jobs"]["gate"]["steps"] if s.get("run", "").startswith("edgesmith ")]
    gl = [c for c in gitlab["script"] if c.startswith("edgesmith ")]
    assert gh == gl and len(gh) == 2  # one set of commands, two CI services
    # the project as a user commits it: the recipe, and a baseline saved from a run of it on main
    project = tmp_path / "project"
    (project / "recipes").mkdir(parents=True)
    (project / "recipes" / "model.yaml").write_text(yaml.safe_dump(recipe(Path("out/main"), calibration="minmax")))
    exe = edgesmith_exe()
    env = {**os.environ, "PATH": f"{Path(exe).parent}{os.pathsep}{os.environ['PATH']}"}
    save = subprocess.run([exe, "baseline", "save", str(gate_runs["base"]), "--to", "ci/baseline.json"], cwd=project, env=env, capture_output=True, text=True)
    assert save.returncode == 0, save.stderr
    for command in gh:
        done = subprocess.run(["bash", "-c", command], cwd=project, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, command + "\n" + done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((project / "out" / "gate" / "check.json").read_text())
    assert result["verdict"] in ("pass", "inconclusive") and not any(f["status"] in ("fail", "missing") for f in result["findings"])
    assert {"junit.xml", "summary.md", "report.html"} <= {p.name for p in (project / "out" / "gate").iterdir()}
