"""``edgesmith baseline save``: a run, frozen as the yardstick for later runs.

The baseline is one JSON file (per target: accuracy metrics and per-sample answers, every latency
sample, artifact size and hash, peak memory, and the whole bar the gate judges by — see ``bar.py``;
the recipe, the library versions and the host), sealed with a digest of its content, plus by default
a copy of each target's compiled artifact in ``<name>.artifacts/`` beside it, so the gate can re-time
the baseline against the candidate on the same machine in the same run. Each save also keeps a copy
in ``<name>.history/``: the accepted baselines ``check --history N`` follows for slow drift.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path
from typing import Any

from edgesmith.errors import InputError
from edgesmith.gate.bar import freeze
from edgesmith.outputs import (
    DuplicateKey,
    atomic_copy,
    atomic_write_text,
    check_finite_metrics,
    check_output_file,
    inside,
    load_manifest,
    manifest_digest,
    sha256,
    unique_keys,
)
from edgesmith.profiles.schema import MetricRule

FORMAT = "edgesmith-baseline/2"
# what makes two runs comparable at all; anything else that differs is a change the gate judges
IDENTITY_KEYS = ("recipe name", "model", "inputs", "metric", "evaluation data")


def load_run(run_dir: Path, device: str | None = None) -> dict[str, Any]:
    """A run's manifest, checked to hold what the gate needs; with ``device``, as measured on that device."""

    if not run_dir.is_dir():
        raise InputError(f"run directory not found: {run_dir}", hint="give the output directory of `edgesmith run`")
    manifest = load_manifest(run_dir)
    if device is not None:
        manifest = device_view(manifest, device, run_dir)
    targets = manifest.get("targets") or {}
    if not targets:
        raise InputError(f"run {run_dir} has no targets", hint="the gate needs a run that compiled and validated at least one target")
    unvalidated = sorted(n for n, t in targets.items() if "metrics" not in t)
    if unvalidated:
        raise InputError(
            f"run {run_dir} stopped before validation for {', '.join(unvalidated)} (verdict {manifest.get('verdict')!r})",
            hint="run the recipe through validation (no --stop-after) before gating it",
        )
    return manifest


def device_view(manifest: dict[str, Any], name: str, run_dir: Path) -> dict[str, Any]:
    """The run as a device measured it (``edgesmith validate RUN --on NAME`` recorded it): each target's
    measures, samples, latency and verdicts are the device's; the host is the device."""

    record = (manifest.get("devices") or {}).get(name)
    if not isinstance(record, dict) or not isinstance(record.get("targets"), dict):
        raise InputError(f"run {run_dir} has no results from device {name}", hint=f"validate it there first: edgesmith validate {run_dir} --on {name}")
    view = copy.deepcopy(manifest)
    for tname, measured in record["targets"].items():
        if tname in view.get("targets", {}):
            view["targets"][tname].update(
                {k: measured[k] for k in ("metrics", "reference_metrics", "samples", "latency", "verdicts", "verdict") if k in measured}
            )
    dev = record.get("device") or {}
    view["host"] = {"cpu": f"device {name} ({dev.get('arch')}, {dev.get('node')})", "device": dev}
    view["measured_on"], view["verdict"] = name, record.get("verdict")
    return view


def identity(manifest: dict[str, Any]) -> dict[str, Any]:
    recipe = manifest.get("recipe", {})
    evaluation = (manifest.get("data") or {}).get("evaluation") or {}
    return {
        "recipe name": recipe.get("name"),
        "model": (recipe.get("model") or {}).get("source"),
        "inputs": recipe.get("inputs"),
        "metric": recipe.get("metric"),
        "evaluation data": {"name": evaluation.get("name"), "samples": evaluation.get("samples")},
    }


def identity_differences(base: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return [f"{k}: baseline {base.get(k)!r}, now {now.get(k)!r}" for k in IDENTITY_KEYS if base.get(k) != now.get(k)]


def _artifact_files(run_dir: Path, main_rel: str) -> list[Path]:

    main = inside(run_dir, main_rel)
    return sorted(main.parent.glob(main.stem + ".*"))  # OpenVINO IR comes as .xml + .bin


def history_dir(baseline_path: Path) -> Path:
    return baseline_path.parent / f"{baseline_path.stem}.history"


def save_baseline(
    run_dir: Path, to: Path, copy_artifacts: bool = True, rules: dict[str, MetricRule] | None = None, history: bool = True, device: str | None = None
) -> dict[str, Any]:
    """Write the baseline for ``run_dir`` to ``to`` (and its artifacts beside it, and a copy in its
    history); ``rules`` declares task metrics the profile does not; ``device``: as measured on that device
    (its results recorded in the run). Returns it."""

    manifest = load_run(run_dir, device)
    check_output_file(to)
    art_root = to.parent / f"{to.stem}.artifacts"
    targets: dict[str, Any] = {}
    copies: list[tuple[Path, Path]] = []
    for name, t in manifest["targets"].items():
        bundle = t.get("bundle") or {}
        files = []
        for f in _artifact_files(run_dir, bundle["artifact"]) if bundle.get("artifact") else []:
            rel = Path(bundle["artifact"]).parent / f.name
            entry = {"name": f.name, "sha256": sha256(f), "bytes": f.stat().st_size, "run_path": str(f.resolve())}
            if copy_artifacts:
                entry["path"] = str(Path(art_root.name) / rel)
                copies.append((f, art_root / rel))
            files.append(entry)
        targets[name] = {
            "profile": {
                "name": t["profile"]["name"],
                "backend": t["profile"]["backend"],
                "threads": t["profile"]["threads"],
                "batch_sizes": t["profile"]["batch_sizes"],
            },
            "metrics": t["metrics"],
            "reference_metrics": t.get("reference_metrics", {}),
            "samples": t.get("samples") or {},
            "latency": t.get("latency", {}),
            "verdict": t.get("verdict"),
            "artifact": {
                "main": Path(bundle.get("artifact", "")).name,
                "backend": t["profile"]["backend"],
                "options": bundle.get("artifact_options", {}),
                "files": files,
            },
            "details": t.get("details", {}),
            "bar": freeze(t, manifest, rules),
        }
    baseline: dict[str, Any] = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source_run": str(run_dir.resolve()),
        "identity": identity(manifest),
        "recipe": manifest.get("recipe"),
        "pass_configs": manifest.get("pass_configs", {}),
        "inputs": manifest.get("inputs", {}),
        "versions": manifest.get("versions", {}),
        "host": manifest.get("host", {}),
        "measured_on": manifest.get("measured_on"),
        "verdict": manifest.get("verdict"),
        "targets": targets,
    }
    baseline["digest"] = manifest_digest(baseline)
    # NOTE: artifacts first, JSON last and atomically: a baseline file never points at missing copies
    if copy_artifacts:
        staging = art_root.with_name(f".{art_root.name}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        for src, dest in copies:
            dest = staging / dest.relative_to(art_root)
            atomic_copy(src, dest)
        shutil.rmtree(art_root, ignore_errors=True)
        if copies:
            staging.rename(art_root)
        else:
            shutil.rmtree(staging, ignore_errors=True)
    text = json.dumps(baseline, indent=1, default=str) + "\n"
    if history:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        folder = history_dir(to)
        number = 1 + max((int(f.name[:6]) for f in folder.glob("[0-9][0-9][0-9][0-9][0-9][0-9]-*.json")), default=0) if folder.is_dir() else 1
        atomic_write_text(folder / f"{number:06d}-{stamp}-{baseline['digest'][:12]}.json", text)  # NOTE: numbered: saves in one second keep their order
    atomic_write_text(to, text)
    return baseline


def load_history(baseline_path: Path, last: int) -> list[tuple[str, dict[str, Any]]]:
    """The last ``last`` accepted baselines (oldest first), each checked like the baseline itself."""
    folder = history_dir(baseline_path)
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return [(f.stem, load_baseline(f)) for f in files[-last:]]


def load_baseline(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"baseline not found: {path}", hint="create one with `edgesmith baseline save RUN_DIR --to baseline.json`")
    try:
        data = json.loads(path.read_text(), object_pairs_hook=unique_keys)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise InputError(f"baseline {path} is not valid JSON{where}", hint="the file is damaged; save the baseline again") from exc
    except DuplicateKey as exc:
        raise InputError(f"baseline {path} names {exc} twice (two targets of one name?)", hint="edgesmith never writes that: save the baseline again") from None
    if isinstance(data, dict) and data.get("format") == "edgesmith-baseline/1":
        raise InputError(
            f"{path} was saved by an older edgesmith (format edgesmith-baseline/1), which did not freeze the bar the gate judges by",
            hint="save it again from its run: edgesmith baseline save RUN_DIR --to " + path.name,
        )
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputError(
            f"{path} is not an edgesmith baseline (format {found!r}, expected {FORMAT!r})",
            hint="create one with `edgesmith baseline save RUN_DIR --to baseline.json`",
        )
    if data.get("digest") != manifest_digest(data):
        raise InputError(
            f"baseline {path} was changed after it was saved (its content does not match its digest)",
            hint="a baseline is not edited by hand: save a new one from a run (`edgesmith baseline save RUN_DIR`), declaring rules with --metric-rule",
        )
    if not isinstance(data.get("targets"), dict) or not data["targets"]:
        raise InputError(f"baseline {path} records no targets", hint="save it from a run that validated at least one target")
    for name, t in data["targets"].items():
        if not isinstance(t, dict) or not isinstance(t.get("metrics"), dict):
            raise InputError(f"baseline {path}: target {name!r} has no metrics", hint="the file is damaged; save the baseline again")
        _check_types(path, name, t)

    check_finite_metrics(data, f"baseline {path}")
    return data


def _check_types(path: Path, name: str, t: dict[str, Any]) -> None:
    """The fields the gate reads have the types it expects (a hand-edited baseline is refused, not crashed on)."""
    expect = {"reference_metrics": dict, "samples": dict, "latency": dict, "artifact": dict, "profile": dict, "bar": dict}
    for key, kind in expect.items():
        if key in t and not isinstance(t[key], kind):
            raise InputError(
                f"baseline {path}: target {name!r} field {key!r} is {type(t[key]).__name__}, expected {kind.__name__}",
                hint="the file is damaged; save the baseline again",
            )
    prof = t.get("profile") or {}
    if not isinstance(prof.get("threads", 1), int) or not isinstance(prof.get("batch_sizes", []), list):
        raise InputError(
            f"baseline {path}: target {name!r} profile threads/batch_sizes have the wrong type", hint="the file is damaged; save the baseline again"
        )
    for f in (t.get("artifact") or {}).get("files") or []:
        if not isinstance(f, dict) or not all(isinstance(f.get(k), str) for k in ("name", "sha256")):
            raise InputError(
                f"baseline {path}: target {name!r} lists an artifact file without name/sha256 strings", hint="the file is damaged; save the baseline again"
            )


def baseline_artifact(baseline: dict[str, Any], baseline_path: Path, target: str) -> tuple[Path | None, str]:
    """The baseline's compiled artifact for ``target`` if a copy with the recorded hash is at hand
    (beside the baseline, else where the run left it), and where it was found or why not."""

    art = baseline["targets"][target].get("artifact") or {}
    files = art.get("files") or []
    if not files:
        return None, "the baseline recorded no artifact"
    root = baseline_path.parent.resolve()
    for where in ("copy", "run"):
        found: dict[str, Path] = {}
        for f in files:
            if where == "copy":
                if not f.get("path"):
                    break
                p = (root / f["path"]).resolve()
                if not p.is_relative_to(root):  # NOTE: paths come from the file; no traversal out of its folder
                    break
            else:
                p = Path(f["run_path"])
            if not p.is_file() or sha256(p) != f["sha256"]:
                break
            found[f["name"]] = p
        else:
            return found[art["main"]], ("the copy beside the baseline" if where == "copy" else f"the baseline run ({Path(files[0]['run_path']).parent})")
    return None, "no copy of the baseline artifact with the recorded hash was found (saved with --no-artifacts, or moved)"
