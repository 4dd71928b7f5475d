"""Optional MLflow logging (local file store) and the documented GitHub Actions workflow."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_check_logs_to_a_local_mlflow_store(cli, gate_runs, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    baseline = tmp_path / "baseline.json"
    assert cli("baseline", "save", gate_runs["base"], "--to", baseline).code == 0
    store = f"file:{tmp_path / 'mlruns'}"
    r = cli("check", gate_runs["worse"], "--baseline", baseline, "--out", tmp_path / "gate", "--no-remeasure", "--mlflow", store)
    assert r.code == 1 and "logged to MLflow" in r.stderr, r.stderr
    import os

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow.tracking.MlflowClient(tracking_uri=store)
    [exp] = [e for e in client.search_experiments() if e.name == "edgesmith/gate-digits"]
    [run] = client.search_runs([exp.experiment_id])
    assert run.data.tags["edgesmith.gate_verdict"] == "fail"
    assert run.data.metrics["x86-avx512-vnni-ort/top1"] < 97 and run.data.metrics["gate/fail"] >= 1
    assert run.data.params["ptq_int8.calibration"] == "percentile"
    assert {"junit.xml", "report.html", "summary.md", "manifest.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def test_github_actions_example_is_well_formed():
    doc = (ROOT / "docs" / "ci-gate.md").read_text()
    block = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    wf = yaml.safe_load(block)
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert "pull_request" in on
    steps = wf["jobs"]["gate"]["steps"]
    runs = " ".join(s.get("run", "") for s in steps)
    assert "edgesmith check" in runs and "--baseline" in runs
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads and uploads[0]["if"] == "always()" and "report.html" in str(uploads[0]["with"]["path"])
    assert all("uses" in s or "run" in s for s in steps)
