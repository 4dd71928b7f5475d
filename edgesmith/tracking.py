"""Optional MLflow logging of runs and gate results (``--mlflow URI``, e.g. ``file:./mlruns``).

Logged: the recipe's name, model and pass settings as parameters; every target's numeric metrics
(``<target>/<metric>``, ``@batch`` written ``_b<batch>``); verdicts and library versions as tags;
the manifest, report and gate outputs as artifacts. Needs ``pip install 'edgesmith[mlflow]'``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from edgesmith._lazy import require


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


def log_to_mlflow(uri: str, manifest: dict[str, Any], files: list[Path], gate: dict[str, Any] | None = None, experiment: str | None = None) -> str:
    """One MLflow run for an edgesmith run (and its gate result); returns the MLflow run id."""

    if uri.startswith("file:") or "://" not in uri:
        # NOTE: MLflow 3 keeps the local file store only behind this opt-out; it is what a team without a
        # tracking server has (a database store needs the full mlflow package and SQLAlchemy)
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
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
