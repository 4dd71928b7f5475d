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


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_tracking_server_is_refused_before_any_work_without_its_password(cli, gate_runs, tmp_path):
    pytest.importorskip("mlflow")
    baseline = tmp_path / "baseline.json"
    assert cli("baseline", "save", gate_runs["base"], "--to", baseline).code == 0
    uri = f"http://alice:pa55word@127.0.0.1:{_closed_port()}"
    r = cli("check", gate_runs["worse"], "--baseline", baseline, "--out", tmp_path / "gate", "--mlflow", uri)
    assert r.code == 2 and len(r.error_lines) == 1, r.stderr
    assert "cannot reach the MLflow tracking server http://alice:***@127.0.0.1" in r.error_lines[0], r.stderr
    assert "pa55word" not in r.stderr + r.stdout and not (tmp_path / "gate").exists()


def test_a_tracking_server_that_fails_mid_log_is_one_typed_error(tmp_path):
    """A server that answers but is not MLflow (404 to everything): one InputError, in seconds, not MLflow's retries."""
    pytest.importorskip("mlflow")
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from edgesmith.errors import InputError
    from edgesmith.tracking import check_tracking_uri, log_to_mlflow

    class NotMlflow(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NotMlflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        check_tracking_uri(uri)  # it answers a connect
        started = time.monotonic()
        manifest = {"recipe": {"name": "r", "model": {"source": "m.onnx"}}, "targets": {}}
        with pytest.raises(InputError, match="logging to MLflow at .* failed") as err:
            log_to_mlflow(uri, manifest, [])
        assert "outputs are written" in (err.value.hint or "") and time.monotonic() - started < 120
    finally:
        server.shutdown()
