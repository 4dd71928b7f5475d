"""``edgesmith search``: the Pareto front of accuracy, latency and size over the choices a recipe marks.

1. The space (search/space.py) is read from the recipe and every choice checked before any work.
2. The study (search/study.py, Optuna) proposes trials; its database lives in the search folder
   (``study.db``) or at ``--storage``. Trials a previous, interrupted search left running are run first,
   under their own numbers; finished ones are never run again.
3. Waves: the builds of up to ``workers`` trials run side by side (search/trial.py: the normal pipeline,
   pass results from the content-addressed cache), then the wave is timed alone, interleaved with the
   float model (search/measure.py). Accuracy comes from the build, on the target's runtime.
4. Each trial is told to the study with its objectives and the target's budgets as constraints.
5. The front: trials within every budget that no other such trial beats on all three objectives. The
   best (fastest on the front; ties: more accurate, then smaller) gets a full run with its manifest in
   ``best/``. No trial within budget: the closest ones are reported and the search exits 1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesmith import pipeline
from edgesmith._lazy import require
from edgesmith.cache import PassCache
from edgesmith.environment import library_versions
from edgesmith.errors import ConfigError, redact
from edgesmith.memory import is_memory_ref
from edgesmith.metrics import FIDELITY_METRICS
from edgesmith.model_io import model_kind, onnx_input_specs, resolve
from edgesmith.outputs import FolderLock, atomic_write_text, check_writable, sha256
from edgesmith.plan import preflight, resolve_plan
from edgesmith.profiles import load_profile
from edgesmith.progress import Reporter
from edgesmith.recipe import InputSpec, parse_recipe
from edgesmith.remote import client
from edgesmith.runtime import get_backend, measurable_backends
from edgesmith.runtime.base import Artifact
from edgesmith.runtime.bench import make_feeds
from edgesmith.search.executors import LocalPool, RayPool, local_cores
from edgesmith.search.report import finish
from edgesmith.search.result import SearchResult, TrialRecord
from edgesmith.search.space import check_choices, parse_space
from edgesmith.search.study import canonical, finished, make_sampler, open_study, orphans, resolve_sampler
from edgesmith.search.waves import Waves

__all__ = ["SearchResult", "Settings", "TrialRecord", "search"]

MARKER = ".edgesmith-search"


@dataclass
class Settings:
    trials: int | None = None
    time_budget_s: float | None = None
    sampler: str = "auto"
    workers: int | None = None
    storage: str | None = None
    cache_dir: Path | None = None
    ray_address: str | None = None
    stop_when_met: bool = False
    seed: int = 0
    force: bool = False
    trust_checkpoint: bool = False
    run_best: bool = True
    dry_run: bool = False  # check the recipe, the space and every choice; print the plan; run nothing
    measure: Any = None  # who times the trials: a device over SSH (``remote.client.measure``); default the executor
    device: str | None = None  # that device's name, for the report


def search(
    data: dict[str, Any], base_dir: Path, out_dir: Path, target: str | None = None, settings: Settings | None = None, reporter: Any = None
) -> SearchResult:
    """Search the choices marked in ``data`` (a recipe as read from YAML) for ``target`` (default: the
    recipe's only target). Writes search.md, search.json, search.html, study.db, trials/, best/."""

    s = settings or Settings()
    rep = reporter or Reporter()
    if not isinstance(data, dict):
        raise ConfigError("a recipe must be a YAML mapping", hint="see `edgesmith search --help`")
    held = sorted({ref for ref in _strings(data) if is_memory_ref(ref)})
    if held and not s.dry_run:
        raise ConfigError(
            f"the search builds each trial in a worker process of its own, which cannot see objects held in this one ({held[0]})",
            hint="give the model as a factory (package.module:function) or a saved file, and the data as files; "
            "edgesmith.optimize without train_budget works on in-memory objects",
        )
    space = parse_space(data.get("passes", []))
    base = _base_recipe(data, target)
    checked: list[Any] = []
    check_choices(space, lambda passes: checked.append(_concrete(base, passes, base_dir)))
    profile = _profile(base, base_dir)
    if s.device is not None:
        client.device_for(s.device, profile)  # a device of another architecture is refused before anything runs
        s = dataclasses.replace(s, measure=s.measure or client.measure(s.device))
    grid = space.grid() if space.size() is not None else None
    sampler_name = resolve_sampler(s.sampler, len(grid) if grid is not None else None, s.trials)
    trials_wanted = s.trials or (len(grid) if grid is not None and sampler_name == "grid" else 20)
    if sampler_name == "grid" and grid is not None:
        trials_wanted = min(trials_wanted, len(grid))  # past the grid a trial would repeat one
    if s.dry_run:
        return _dry_run(space, checked, base_dir, Path(out_dir), sampler_name, trials_wanted, s)
    # NOTE: the study is what these trials measured: the recipe, and also the target profile as read, the data's
    # files and the libraries that ran them (a study of other data or versions is another study, never resumed into)
    identity = canonical(
        {
            "recipe": {k: v for k, v in base.items() if k != "output_dir"},
            "passes": space.passes,
            "profile": profile.model_dump(mode="json"),
            "data": _data_identity(base, base_dir),
            "versions": {k: v for k, v in library_versions().items() if k in ("edgesmith", "onnxruntime", "openvino", "torch", "onnx", "numpy")},
        }
    )

    study_name = "edgesmith-" + hashlib.sha256(identity.encode()).hexdigest()[:12]
    executor = _executor(s, profile, Path(s.cache_dir) if s.cache_dir else Path(out_dir) / "cache")  # a bad --ray fails before anything is written

    created = not Path(out_dir).exists()
    try:
        out = _claim_folder(out_dir, study_name, s.force)
        lock = FolderLock(out)  # one search per folder at a time: every "running" trial in the study is then an orphan
    except BaseException:
        executor.close()
        raise
    unopened: list[bool] = []

    def study(name: str) -> Any:
        try:
            return open_study(
                s.storage or f"sqlite:///{out / 'study.db'}",
                name,
                make_sampler(sampler_name, s.seed, _workers(s)),
                grid if sampler_name == "grid" else None,
                {"edgesmith_space": identity},
            )
        except BaseException:
            unopened.append(True)
            raise

    try:
        return _search(
            space,
            base,
            base_dir,
            out,
            profile,
            study_name,
            sampler_name,
            grid,
            trials_wanted,
            s,
            rep,
            executor,
            study,
        )
    finally:
        lock.release()
        if unopened and created:  # the study could not be opened (a bad --storage): nothing of this search stays
            shutil.rmtree(out, ignore_errors=True)


def _workers(s: Settings) -> int:

    return s.workers or len(local_cores())


def _base_recipe(data: dict[str, Any], target: str | None) -> dict[str, Any]:
    base = {k: v for k, v in data.items() if k != "passes"}
    if target:
        base["targets"] = [target]
    targets = base.get("targets") or ["x86-avx512-vnni-ort"]
    if len(targets) != 1:
        raise ConfigError(f"search works on one target at a time, the recipe lists {len(targets)}", hint="give --target PROFILE")
    base["targets"] = targets
    return base


def _dry_run(space: Any, checked: list[Any], base_dir: Path, out: Path, sampler_name: str, trials: int, s: Settings) -> SearchResult:
    """What ``--dry-run`` checks beyond the choices (each already validated as a recipe): the first trial's
    recipe passes everything a run would refuse up front (files, data sources, inputs, labels), and the
    search folder may be written. The plan lists the space and the first trial's steps."""

    first = resolve_plan(checked[0], base_dir, out / "trials" / "0000") if checked else None
    if first is not None:
        preflight(first, force=True)
    check_writable(out)
    size = space.size()
    steps = [
        f"space: {'; '.join(p.describe() for p in space.params)} ({size if size is not None else 'a continuous range of'} combinations)",
        f"sampler {sampler_name}, {trials} trial(s)" + (f", within {s.time_budget_s:.0f} s" if s.time_budget_s else ""),
        *(f"each trial (first: {len(checked[0].passes)} pass(es)): {step}" for step in (first.steps() if first else [])),
        "time each wave interleaved with the float model; the front of accuracy, latency and size; the best trial run in full",
    ]
    return SearchResult(out, [], [], None, [], "", {}, {"plan": steps}, "dry-run")


def _concrete(base: dict[str, Any], passes: list[dict], base_dir: Path) -> Any:

    recipe = parse_recipe({**base, "passes": passes})
    pipeline.check_pass_order(recipe, model_kind(recipe.model.source, base_dir))
    return recipe


def _profile(base: dict[str, Any], base_dir: Path) -> Any:

    t = parse_recipe({**base, "passes": []}).targets[0]
    profile = load_profile(t.profile, base_dir).with_overrides(t.budgets, t.threads, t.batch_sizes)
    if profile.backend not in measurable_backends():
        raise ConfigError(
            f"search measures every trial on the target; {profile.backend} cannot run here",
            hint="search for an onnxruntime or openvino profile (TensorRT was never executed on this machine)",
        )
    get_backend(profile.backend)
    return profile


def _strings(obj: Any) -> Any:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _strings(v)


def _data_identity(base: dict, base_dir: Path) -> dict[str, Any]:
    """The recipe's data sources as they are now: a file by its hash, a folder by its listing (names, sizes,
    times), a ``module:function`` by its module's source."""
    out: dict[str, Any] = {}
    for role, spec in ((base.get("data") or {}) if isinstance(base.get("data"), dict) else {}).items():
        src = spec.get("source") if isinstance(spec, dict) else None
        if not isinstance(src, str):
            continue
        try:
            path = resolve(src, base_dir)
        except Exception:  # noqa: BLE001 - a built-in source (digits) or a callable
            path = None
        if path is not None and path.is_file():
            out[role] = sha256(path)
        elif path is not None and path.is_dir():
            listing = sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file())
            out[role] = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
        elif ":" in src:
            spec_ = importlib.util.find_spec(src.split(":")[0]) if not src.startswith((".", "/")) else None
            if spec_ is not None and spec_.origin and Path(spec_.origin).is_file():
                out[role] = sha256(Path(spec_.origin))
    return out


def _claim_folder(out: Path, study_name: str, force: bool) -> Path:
    """A new folder, or one an earlier search of the same recipe and target wrote (resumed)."""

    out = Path(out)
    marker = out / MARKER
    if marker.is_file():
        theirs = marker.read_text().strip()
        if theirs != study_name and not force:
            raise ConfigError(
                f"{out} holds a search of another recipe or target ({theirs})", hint="choose another --out, or pass --force to start a new study there"
            )
    elif out.is_dir() and any(p for p in out.iterdir() if p.name != ".edgesmith.lock") and not force:
        raise ConfigError(
            f"output directory {out} holds files and is not an edgesmith search: refusing to write into it",
            hint="choose a new or empty folder, or pass --force",
        )
    check_writable(out)
    out.mkdir(parents=True, exist_ok=True)

    atomic_write_text(marker, study_name + "\n")
    return out


def _search(
    space: Any,
    base: dict,
    base_dir: Path,
    out: Path,
    profile: Any,
    study_name: str,
    sampler_name: str,
    grid: list | None,
    trials_wanted: int,
    s: Settings,
    rep: Any,
    executor: Any,
    open_: Any,
) -> SearchResult:

    require("optuna")
    started = time.time()
    cache = PassCache(Path(s.cache_dir) if s.cache_dir else out / "cache")
    for note in cache.notes:
        rep.info(f"[search] note: {note}")
    study = open_(study_name)
    done_before = len(finished(study))
    resumed = orphans(study)
    if done_before or resumed:
        rep.info(
            f"[search] resuming study {study_name}: {done_before} trial(s) finished earlier are kept"
            + (f", {len(resumed)} cut off mid-way run again under their own numbers" if resumed else "")
        )

    waves = Waves(study, space, base, base_dir, out, profile, None, executor, cache, s, rep)
    interrupted: str | bool = False
    try:
        waves.ref = _reference(base, base_dir, out, profile, cache, s, rep)
        waves.run(resumed, trials_wanted, started)
    except KeyboardInterrupt as exc:
        interrupted = "SIGTERM" if type(exc).__name__ == "Terminated" else "Ctrl-C"
        executor.close(cancel=True)
        rep.info("[search] interrupted: finished trials are saved in the study; run the same command again to resume")
    finally:
        if not interrupted:
            executor.close()

    info = {
        "study": study_name,
        "storage": redact(s.storage) if s.storage else "sqlite:///study.db (in this folder)",
        "sampler": sampler_name,
        "space": [p.describe() for p in space.params],
        "grid_size": len(grid) if grid is not None else None,
        "trials_wanted": trials_wanted,
        "executor": executor.describe(),
        "workers": getattr(executor, "workers", 1),
        "seconds": round(time.time() - started, 1),
        "build_seconds": round(waves.build_seconds, 1),
        "timing_seconds": round(waves.timing_seconds, 1),
        "new_trials": waves.ran,
        "resumed_trials": len(resumed),
        "trials_per_hour": round(3600 * waves.ran / max(time.time() - started, 1e-9), 1),
        "cache": {
            "folder": str(cache.root),
            "hits": waves.cache_hits,
            "misses": waves.cache_misses,
            "hit_rate": waves.cache_hits / max(waves.cache_hits + waves.cache_misses, 1),
        },
        "notes": list(cache.notes) + list(getattr(executor, "notes", [])) + waves.notes,
        "interrupted": interrupted,
        "profile": profile.name,
        "batch": profile.batch_sizes[0],
    }
    if waves.ref is None:  # stopped before the float reference was measured: nothing to report but the study
        raise KeyboardInterrupt
    return finish(study, space, base, base_dir, out, profile, waves.ref, info, s, rep, cache)


def _executor(s: Settings, profile: Any, cache_root: Path) -> Any:

    if s.ray_address:
        return RayPool(s.ray_address, profile, cache_root)
    return LocalPool(_workers(s))


@dataclass
class Reference:
    """The float model on the target: its artifact (every race's baseline), its metrics, the feeds."""

    artifact: Any
    metrics: dict[str, Any]
    accuracy_key: str
    feeds: dict
    threads: int


def _reference(base: dict, base_dir: Path, out: Path, profile: Any, cache: Any, s: Settings, rep: Any) -> Reference:

    recipe = parse_recipe({**base, "passes": []})
    with rep.step("[search] the float model on the target (export, compile, accuracy)"):
        res = pipeline.run(
            recipe,
            base_dir,
            out_dir=out / "reference",
            cache=cache if cache.usable else None,
            measure_latency=False,
            force=True,
            trust_checkpoint=s.trust_checkpoint,
        )
    t = next(iter(res.manifest["targets"].values()))
    art = Artifact(out / "reference" / t["bundle"]["artifact"], profile.backend, t["bundle"].get("artifact_options") or {})
    metrics = {k: v for k, v in t.get("metrics", {}).items() if k != "artifact_mb"}
    key = next((k for k in metrics if k not in FIDELITY_METRICS and not k.startswith(("latency_", "speedup", "peak_"))), "cosine")

    float_onnx = out / "reference" / "model.onnx"
    float_onnx = float_onnx if float_onnx.is_file() else resolve(recipe.model.source, base_dir)
    specs = list(recipe.inputs) if recipe.inputs else [InputSpec.model_validate(x) for x in onnx_input_specs(float_onnx)]
    _, evaluation = pipeline.load_data(recipe, specs, base_dir, False)
    batch = profile.batch_sizes[0]
    feeds = make_feeds(specs, batch, evaluation.first(batch) if evaluation is not None else None)
    metrics["artifact_mb"] = t.get("metrics", {}).get("artifact_mb")
    return Reference(art, metrics, key, feeds, profile.threads)
