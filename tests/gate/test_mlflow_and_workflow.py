"""Optional MLflow logging (local file store)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
