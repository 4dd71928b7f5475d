"""Optional MLflow logging of runs and gate results (``--mlflow URI``, e.g. ``file:./mlruns``).

Logged: the recipe's name, model and pass settings as parameters; every target's numeric metrics
(``<target>/<metric>``, ``@batch`` written ``_b<batch>``); verdicts and library versions as tags;
the manifest, report and gate outputs as artifacts. Needs ``pip install 'edgesmith[mlflow]'``.
"""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgesmith._lazy import require
from edgesmith.errors import EdgesmithError, InputError


def _metric_name(target: str, metric: str) -> str:
    name = f"{target}/{metric}".replace("@", "_b")
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in name)


def _params(manifest: dict[str, Any]) -> dict[str, str]:
    recipe = manifest.get("recipe", {})
    out = {"recipe": str(recipe.get("name")), "model": str((recipe.get("model") or {}).get("source")), "targets": ",".join(manifest.get("targets", {}))}
    for p, cfg in (manifest.get("pass_configs") or {}).items():
        for k, v in cfg.items():
            if v not in (None, [], {}):
                out[f"{p}.{k}"] = str(v)[:500]
    return out


REACH_TIMEOUT_S = 5.0


def check_tracking_uri(uri: str) -> None:
    """Before any work: the mlflow package is there, and a tracking server (http/https) answers a TCP connect within
    a few seconds — not four minutes of MLflow's retries after the run, ending in a traceback."""
    require("mlflow")
    parsed = urlsplit(uri)
    if parsed.scheme not in ("http", "https"):
        return
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        with socket.create_connection((parsed.hostname or "", port), timeout=REACH_TIMEOUT_S):
            pass
    except (OSError, ValueError) as exc:
        raise InputError(
            f"cannot reach the MLflow tracking server {uri}: {exc.strerror or exc if isinstance(exc, OSError) else exc}",
            hint="start the server or fix --mlflow (file:./mlruns needs no server), or leave --mlflow out",
        ) from exc


def log_to_mlflow(uri: str, manifest: dict[str, Any], files: list[Path], gate: dict[str, Any] | None = None, experiment: str | None = None) -> str:
    """One MLflow run for an edgesmith run (and its gate result); returns the MLflow run id. A server that fails
    now (it answered the check before the run) is one typed error naming the run's folder, which is complete."""
    try:
        return _log(uri, manifest, files, gate, experiment)
    except EdgesmithError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow raises MlflowException, requests' and OS errors alike
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"logging to MLflow at {uri} failed: {type(exc).__name__}: {first}",
            hint="the run's outputs are written all the same; check the tracking server, then log again with the same command",
        ) from exc


def _log(uri: str, manifest: dict[str, Any], files: list[Path], gate: dict[str, Any] | None, experiment: str | None) -> str:
    if uri.startswith("file:") or "://" not in uri:
        # NOTE: MLflow 3 keeps the local file store only behind this opt-out; it is what a team without a
        # tracking server has (a database store needs the full mlflow package and SQLAlchemy)
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    # NOTE: MLflow's defaults retry a dead server for minutes; one short try each, the error then says so
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    mlflow = require("mlflow")
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment or f"edgesmith/{manifest['recipe']['name']}")
    with mlflow.start_run(run_name=("check " if gate else "run ") + str(manifest["recipe"]["name"])) as run:
        mlflow.log_params(_params(manifest))
        metrics = {}
        for target, t in manifest.get("targets", {}).items():
            for k, v in (t.get("metrics") or {}).items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    metrics[_metric_name(target, k)] = float(v)
        mlflow.log_metrics(metrics)
        tags = {"edgesmith.verdict": str(manifest.get("verdict")), "edgesmith.kind": "check" if gate else "run"}
        tags.update({f"version.{k}": str(v) for k, v in (manifest.get("versions") or {}).items()})
        if gate:
            tags["edgesmith.gate_verdict"] = gate["verdict"]
            for status in ("fail", "inconclusive", "pass"):
                mlflow.log_metric(f"gate/{status}", sum(f["status"] == status for f in gate["findings"]))
        mlflow.set_tags(tags)
        for f in files:
            if Path(f).is_file():
                mlflow.log_artifact(str(f))
        return run.info.run_id
