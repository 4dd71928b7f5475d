"""``edgesmith optimize``: recognise the model, try the settings its structure calls for on the target
(and on other runtimes of the same device), measure fidelity and latency there, keep the best that
meets the budgets — or FP32, with the reason, when nothing pays.

1. Export the float model once; read its structure (compress/quantize/structure.py).
2. Candidates from the policy (compress/quantize/policy.py); each quantized once (ORT static candidates share
   one calibration per method through ONNX Runtime's calibration cache), compiled for its runtime,
   run over the evaluation data: task metric and output cosine/SQNR against the float model, judged
   against the profile's accuracy budgets. A candidate that crashes is recorded with its error and
   the search goes on.
3. Latency: the float model on each runtime and every candidate within the accuracy budget are
   timed interleaved, round by round, in one child process (the same drift hits all); speed-up over
   the target runtime's FP32 with a bootstrap interval over rounds.
4. Winner: the fastest candidate within the accuracy budget whose whole speed-up interval lies above 1
   (surely faster than FP32). None: FP32 is kept — on another runtime of the device if that one is
   surely faster — and the report says why each candidate lost.
5. A full run of the winner (artifact, report, manifest as `edgesmith run` writes them), plus
   ``optimize.md`` / ``optimize.json`` (every candidate, its numbers, why it was tried, why it won or
   lost) and ``optimized.yaml`` (the recipe that reproduces the winner).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edgesmith import engine, pipeline
from edgesmith.cache import PassCache
from edgesmith.compress import PassContext, build_pass_config, get_pass
from edgesmith.compress.contract import CalibrationCache, Records
from edgesmith.compress.quantize.policy import Plan, plan
from edgesmith.compress.quantize.structure import analyse
from edgesmith.engine import TrialRecord
from edgesmith.errors import ConfigError
from edgesmith.evaluate import accuracy_profile, gap_text, judge
from edgesmith.evaluate.judge import pick_fastest, undecided
from edgesmith.memory import PREFIX
from edgesmith.metrics import FIDELITY_METRICS
from edgesmith.optimize import preset
from edgesmith.outputs import atomic_write_text, check_output_dir
from edgesmith.profiles import builtin_names, load_profile
from edgesmith.progress import Reporter
from edgesmith.recipe import PassSpec, TargetSpec
from edgesmith.remote import client
from edgesmith.report import Markup, md, md_code
from edgesmith.reporting.document import Report, Section, Table, trial_checks, write
from edgesmith.runtime import get_backend, measurable_backends
from edgesmith.runtime.bench import make_feeds
from edgesmith.search.executors import local_measure
from edgesmith.search.space import parse_space


@dataclass
class OptimizeResult:
    structure: Any
    trials: list[TrialRecord]
    winner: TrialRecord
    explanation: str
    out_dir: Path
    batch: int
    verdict: str
    reference: dict[str, float]
    seconds: float
    machine: dict | None = None  # runtime.contention's record of the race that was kept
    training: dict | None = None  # the training search (preset.py), when a training budget was given

    @property
    def claims_withheld(self) -> bool:
        return bool(self.machine and self.machine.get("busy"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "structure": self.structure.as_dict(),
            "batch": self.batch,
            "winner": self.winner.plan.name,
            "explanation": self.explanation,
            "verdict": self.verdict,
            "reference": self.reference,
            "machine": self.machine,
            "claims_withheld": self.claims_withheld,
            "training_search": self.training,
            "search_seconds": round(self.seconds, 1),
            "candidates": [t.as_dict() for t in self.trials],
        }


def optimize(
    recipe: Any,
    base_dir: Path,
    *,
    out_dir: Path | None = None,
    time_budget_s: float = 300.0,
    other_runtimes: bool = True,
    reporter: Any = None,
    plans: list[Plan] | None = None,
    force: bool = False,
    trust_checkpoint: bool = False,
    train_budget: int | None = None,
    cache_dir: Path | None = None,
    train_minutes: float | None = None,
    device: str | None = None,
) -> OptimizeResult:

    rep = reporter or Reporter()
    if train_budget or train_minutes:
        _refuse_in_memory(recipe)
    profile = _target_profile(recipe, base_dir)
    out = Path(out_dir or recipe.output_dir)
    if not out.is_absolute() and out_dir is None:
        out = base_dir / out
    check_output_dir(out, force)
    started = time.time()
    runtimes = [profile.backend]
    if other_runtimes and profile.device == "cpu":
        runtimes += [r for r in measurable_backends() if r != profile.backend and get_backend(r, require_installed=False).available()]
    profiles = {r: (profile if r == profile.backend else _sibling(profile, r)) for r in runtimes}

    with tempfile.TemporaryDirectory(prefix="edgesmith-optimize-") as tmp:
        work = Path(tmp)

        torch_passes = [p for p in recipe.passes if get_pass(p.type).stage == "torch"]
        if len(torch_passes) != len(recipe.passes):
            rep.info(
                "the recipe's ONNX-stage passes are left out: optimize chooses those itself "
                f"({', '.join(p.type for p in recipe.passes if p not in torch_passes)})"
            )
        with rep.step("exporting the float model once"):
            float_path, start = pipeline.export_once(recipe, base_dir, work, trust_checkpoint, PassCache(Path(cache_dir)) if cache_dir else None)
        structure = analyse(start)
        rep.info(f"model: {structure.describe()}")
        judge = _Judge(recipe, base_dir, float_path, profile, work)
        train_spec = (train_budget, train_minutes, preset.check_trainable(recipe, base_dir, judge.specs)) if train_budget or train_minutes else None
        proposed = plans if plans is not None else plan(structure, profile.backend, runtimes)
        candidates = _Candidates(proposed, judge, profiles, profile, start, work, rep, time_budget_s)
        if device is not None:
            client.device_for(device, profile)
            candidates.measure = client.measure(device)
        outcome = engine.run(candidates, time_budget_s, rep, started)
        trials, machine, batch = outcome.records, outcome.machine, candidates.batch
        winner, explanation = _choose(trials, profile.backend, machine)
        elapsed = time.time() - started

    final = _final_recipe(recipe, winner, profiles[winner.plan.runtime], out, torch_passes)
    training = None
    if train_spec is not None:
        final, training = _training_stage(recipe, base_dir, out, trials, winner, torch_passes, train_spec, final, rep, trust_checkpoint, profile)
        if training["chosen"]:
            explanation = training["why"]
    with rep.step(f"full run of the winner: {training['label'] if training and training['chosen'] else winner.plan.name}"):
        # NOTE: the folder passed the output policy above; the run keeps the profile file its recipe names
        result = pipeline.run(final, base_dir, out_dir=out, reporter=rep, force=True, keep=("target.profile.yaml", "search"), trust_checkpoint=trust_checkpoint)
    verdict = result.verdict if device is None else _device_verdict(device, out, recipe.inconclusive, rep)
    if machine and machine.get("busy") and verdict == "pass":
        # NOTE: no PASS on a speed nobody confirmed: the float model was kept, and the verdict says the race could not decide
        verdict = undecided(recipe.inconclusive)
    res = OptimizeResult(structure, trials, winner, explanation, out, batch, verdict, judge.reference, elapsed, machine, training)
    note = _write(res, final, profile)
    if note:
        rep.info(note)
    return res


def _refuse_in_memory(recipe: Any) -> None:
    if PREFIX in json.dumps(recipe.model_dump(mode="json"), default=str):
        raise ConfigError(
            "training candidates are built in worker processes of their own, which cannot see the in-memory model or data given here",
            hint="give the model as a factory (package.module:function) or a saved file and the data as files, or leave the training budget out",
        )


def _device_verdict(device: str, out: Path, policy: str, rep: Any) -> str:
    """The device's word on the winner: accuracy on its runtime, latency timed there."""
    on_device, transfer = client.validate(device, out, reporter=rep)
    client.record(out, on_device)
    rep.info(f"[{device}] the winner validated on the device: {on_device['verdict'].upper()} (sent {transfer['sent_files']} file(s))")
    return undecided(policy) if on_device["verdict"] == "inconclusive" else str(on_device["verdict"])


def _target_profile(recipe: Any, base_dir: Path) -> Any:
    """The one target's profile, refused up front when optimize cannot measure on it."""

    if len(recipe.targets) != 1:
        raise ConfigError(f"optimize works on one target, the recipe has {len(recipe.targets)}", hint="give one --target")
    if recipe.data.calibration is None or recipe.data.evaluation is None:
        raise ConfigError("optimize needs calibration and evaluation data", hint="give --data (and --eval-data), or `data:` in the recipe")
    target = recipe.targets[0]
    profile = load_profile(target.profile, base_dir).with_overrides(target.budgets, target.threads, target.batch_sizes)
    if profile.backend not in measurable_backends():
        raise ConfigError(
            f"optimize measures on the target; {profile.backend} cannot run here",
            hint="optimize for an onnxruntime or openvino profile (TensorRT was never executed on this machine)",
        )
    get_backend(profile.backend)  # a missing runtime is a clear error now, not a failed candidate later
    return profile


def _training_stage(
    recipe: Any,
    base_dir: Path,
    out: Path,
    trials: list[TrialRecord],
    winner: TrialRecord,
    torch_passes: list,
    budget: tuple[int | None, float | None, bool],
    final: Any,
    rep: Any,
    trust_checkpoint: bool,
    profile: Any,
) -> tuple[Any, dict]:
    """The preset's training search (preset.py) after the post-training pick; its best replaces the pick
    when it is surely faster than FP32, faster than the pick, and within every budget. ``budget``: (epochs,
    minutes, labelled). A network retrained with labels is judged on the task, not on reproducing the float
    model's logits: the fidelity budgets are left out of that search's profile (and of the final run when its
    trial is chosen); one recovered from the float model alone (no labels) is judged on those budgets."""

    epochs, minutes, labelled = budget
    # NOTE: the search runs where the post-training pick runs (its INT8 setting is that runtime's): NNCF's pick
    # for OpenVINO, searched on ONNX Runtime, made the recognizer's trials 1.5x where the pick was 2.1x
    elsewhere = winner.plan.runtime != profile.backend
    rt_profile = _sibling(profile, winner.plan.runtime) if elsewhere else profile
    target_rt = TargetSpec(profile=str(preset.task_profile(rt_profile, out / "search", task_only=labelled))) if labelled or elsewhere else recipe.targets[0]
    # speed-ups in the search are over FP32 on its runtime, the pick's over FP32 on the target's
    fp32_there = next((t.speedup for t in trials if elsewhere and not t.plan.pass_type and t.plan.runtime == winner.plan.runtime and t.speedup), 1.0)
    on_target = [t for t in trials if t.plan.pass_type and t.status in ("winner", "ok", "slower") and t.feasible and t.plan.runtime == winner.plan.runtime]
    int8_src = winner if winner.plan.pass_type else max(on_target, key=lambda t: t.speedup or 0.0, default=None)
    int8 = {"type": int8_src.plan.pass_type, **int8_src.plan.options} if int8_src is not None else None
    passes = [p.as_yaml() for p in torch_passes] + preset.space(epochs, int8, labelled, minutes)
    res = preset.run(recipe.model_copy(update={"targets": [target_rt]}), base_dir, out / "search", passes, rep, trust_checkpoint)
    chosen, why = preset.pick(res, ((winner.speedup or 1.0) if winner.plan.pass_type else 1.0) / fp32_there)
    info = {
        "folder": "search",
        "epochs": epochs,
        "minutes": minutes,
        "labelled": labelled,
        "runtime": rt_profile.backend,  # the search's speed-ups are over FP32 there
        "budgets": "the target's, less the fidelity ones (task metric only)" if labelled else "the target's (no labels: fidelity to the float model)",
        "trials": len(res.trials),
        "front": [t.number for t in res.front],
        "best": res.best
        and {"number": res.best.number, "label": res.best.label, "speedup": res.best.speedup, "accuracy": res.best.accuracy, "size_mb": res.best.size_mb},
        "chosen": chosen is not None,
        "why": why,
        "label": chosen.label if chosen else None,
    }
    if chosen is None:
        return final, info
    concrete = [PassSpec.model_validate(p) for p in parse_space(passes).concrete(chosen.params)]
    return final.model_copy(update={"passes": concrete, "targets": [target_rt]}), info


def _sibling(profile: Any, runtime: str) -> Any:
    """The profile of the same device on another runtime: a built-in one with the same hardware and
    threads if there is one, else this profile with the runtime swapped (same budgets)."""

    for name in builtin_names():
        p = load_profile(name)
        if p.backend == runtime and p.hardware == profile.hardware and p.threads == profile.threads and p.device == profile.device:
            return p.model_copy(update={"budgets": profile.budgets, "batch_sizes": profile.batch_sizes, "gate": profile.gate})
    return profile.model_copy(update={"name": f"{profile.name}+{runtime}", "backend": runtime})


class _Judge:
    """Quantizes, compiles and runs one candidate; judges it against the profile's accuracy budgets
    through the one evaluator (float reference on the target's runtime, computed once)."""

    def __init__(self, recipe: Any, base_dir: Path, float_path: Path, profile: Any, work: Path):

        self.recipe, self.profile = recipe, profile
        self.acc_profile = accuracy_profile(profile)
        setup = pipeline.search_setup(recipe, base_dir, float_path, profile, work)
        self.specs, self.calib, self.evaluation = setup.specs, setup.calibration, setup.evaluation
        self.evaluator, self.ref = setup.evaluator, setup.reference
        self.reference = {k: v for k, v in self.ref.metrics.items() if k != "sqnr_db"}
        self.cache_dir = work / "calibration-cache"  # NOTE: not beside the float model: that may be the user's own ONNX file
        self.cache_dir.mkdir(exist_ok=True)

    def evaluate(self, t: TrialRecord, start: Path, profile: Any, work: Path, quantized: dict) -> None:

        t0 = time.perf_counter()
        work.mkdir(parents=True, exist_ok=True)
        try:
            model = start if t.plan.pass_type is None else self._quantize(t.plan, start, work, quantized)
            backend = get_backend(t.plan.runtime)
            t.artifact = backend.compile(model, work / f"model{backend.artifact_suffix}", profile, self.specs, self.calib)
            t.metrics = dict(self.evaluator.evaluate(backend, t.artifact, profile.threads, self.ref).metrics)
        except Exception as exc:  # noqa: BLE001 - one candidate's crash is its own failure; the search goes on
            first = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else ""
            t.state, t.status, t.reason = "failed", "failed", f"{type(exc).__name__}: {first}"
            t.error = t.reason
            t.seconds = time.perf_counter() - t0
            return
        verdicts = [v for v in judge(self.acc_profile, t.metrics, self.ref.metrics) if v.status != "n/a"]
        t.state, t.feasible = "complete", all(v.status == "pass" for v in verdicts)
        t.accuracy = next((v for k, v in t.metrics.items() if k not in FIDELITY_METRICS), t.metrics.get("cosine"))
        t.status = "ok" if t.feasible else "accuracy"
        t.gaps = [gap_text(v) for v in verdicts if v.status == "fail"]
        if not t.feasible:
            t.reason = "outside the accuracy budget: " + "; ".join(t.gaps)
        t.seconds = time.perf_counter() - t0

    def _quantize(self, p: Plan, start: Path, work: Path, quantized: dict) -> Path:

        assert p.pass_type is not None  # only candidates with a pass are quantized

        if p.quant_key in quantized:  # the same quantized model, compiled for another runtime
            done = quantized[p.quant_key]
            if isinstance(done, Exception):
                raise done
            return done
        ctx = PassContext(
            work_dir=work,
            profile=self.profile,
            input_specs=tuple(self.specs),
            calibration=self.calib,
            evaluation=self.evaluation,
            records=Records(CalibrationCache(self.cache_dir)),
        )
        try:
            path = get_pass(p.pass_type).apply(start, build_pass_config(p.pass_type, p.options), ctx)
        except Exception as exc:
            quantized[p.quant_key] = exc
            raise
        quantized[p.quant_key] = path
        return path

    def feeds(self, batch: int) -> dict:

        return make_feeds(self.specs, batch, self.evaluation.first(batch))


class _Candidates:
    """optimize's preset of the engine: every candidate the policy gives is proposed at once (one wave), built
    in this process from the one export (ORT static candidates share one calibration per method), and the
    candidates within the accuracy budget are timed in one race against FP32 on the target's runtime."""

    def __init__(self, plans: list[Plan], judge: _Judge, profiles: dict, profile: Any, start: Path, work: Path, rep: Any, budget_s: float):
        self.plans, self.judge, self.profiles, self.profile, self.start, self.work, self.rep = plans, judge, profiles, profile, start, work, rep
        self.budget_s = budget_s
        self.batch = profile.batch_sizes[0]
        self.ref: TrialRecord | None = None
        self.measure: Any = local_measure  # or a device's race over SSH (remote.client.measure)

    def propose(self, done: list[TrialRecord], out_of_time: bool) -> list[TrialRecord]:
        if done:
            return []
        return [TrialRecord(i, dict(p.options), p.name, "pending", stage=p.why, plan=p) for i, p in enumerate(self.plans)]

    def build(self, wave: list[TrialRecord], out_of_time: Any) -> None:
        quantized: dict[str, Path | Exception] = {}
        for t in wave:
            if out_of_time():
                t.state = t.status = "skipped"
                t.reason = f"time budget ({self.budget_s:.0f} s) spent before this candidate"
                continue
            with self.rep.step(f"[optimize] {t.plan.name}"):
                self.judge.evaluate(t, self.start, self.profiles[t.plan.runtime], self.work / f"c{t.number}", quantized)

    def timing(self, wave: list[TrialRecord]) -> tuple[engine.Timing, list[TrialRecord]] | None:
        """Every FP32 model and every candidate within the accuracy budget, against FP32 on the target."""

        runners = [t for t in wave if t.status == "ok" or (t.plan.pass_type is None and t.artifact is not None)]
        self.ref = next((t for t in runners if t.plan.pass_type is None and t.plan.runtime == self.profile.backend), None)
        if self.ref is None:
            return None
        others = [t for t in runners if t is not self.ref]
        self.rep.info(f"[optimize] timing {len(runners)} model(s) interleaved at batch {self.batch}")
        return engine.Timing(self.ref.artifact, self.judge.feeds(self.batch), self.profile.threads, self.measure, rounds=12), others

    def tell(self, wave: list[TrialRecord]) -> None:
        for t in wave:
            if t.state == "failed" and t.status == "ok":  # built and within budget, but its timing failed
                t.status, t.reason = "failed", t.error
        fp32 = next((t.timing["fp32_p50_ms"] for t in wave if t.timing.get("fp32_p50_ms")), None)
        if self.ref is not None and fp32 is not None:
            self.ref.timing = {"p50_ms": fp32}
            self.ref.speedup = self.ref.low = self.ref.high = 1.0


def _choose(trials: list[TrialRecord], target_runtime: str, machine: dict | None = None) -> tuple[TrialRecord, str]:
    ref = next(t for t in trials if t.plan.pass_type is None and t.plan.runtime == target_runtime)
    if machine and machine.get("busy"):
        return _choose_busy(trials, ref, target_runtime, machine)
    for t in trials:
        if t.status == "ok" and t is not ref and t.speedup is not None and t.low is not None and t.low <= 1.0:
            t.status = "slower"
            t.reason = f"not surely faster than FP32 on {_rt(target_runtime)}: {t.speedup:.2f}x (interval {t.low:.2f}-{t.high:.2f})"
    fast = [t for t in trials if t.status == "ok" and t.plan.pass_type is not None and t.speedup is not None]
    if fast:
        win = pick_fastest(fast, lambda t: t.speedup, lambda t: (t.low, t.high) if t.low is not None else None, lambda t: t.metrics.get("cosine", 0.0))
        lead = max(fast, key=lambda t: t.speedup or 0.0)
        cos = lambda t: f"cosine {t.metrics.get('cosine', float('nan')):.4f}"  # noqa: E731
        if lead is win:
            why = f"{win.plan.name} is the fastest candidate within the accuracy budget: {win.speedup:.2f}x FP32 on "
        else:
            why = (
                f"{win.plan.name} is as fast as the fastest candidate within the accuracy budget ({lead.plan.name}, {lead.speedup:.2f}x, "
                f"interval {lead.low:.2f}-{lead.high:.2f}: the measurement cannot tell them apart) and more faithful ({cos(win)} vs {cos(lead)}): {win.speedup:.2f}x FP32 on "
            )
        why += f"{_rt(target_runtime)} (interval {win.low:.2f}-{win.high:.2f}), {cos(win)}"
        others = [t for t in fast if t is not win]
        if others:
            second = max(others, key=lambda t: t.speedup or 0.0)
            why += f"; runner-up {second.plan.name} at {second.speedup:.2f}x"
    else:
        alt = [t for t in trials if t.plan.pass_type is None and t is not ref and t.status == "ok" and t.low is not None and t.low > 1.0]
        win = max(alt, key=lambda t: t.speedup or 0.0) if alt else ref
        lost = [t for t in trials if t.plan.pass_type is not None]
        reasons = "; ".join(f"{t.plan.name}: {t.reason or t.status}" for t in lost) or "no candidate applied"
        why = (
            "no INT8 setting paid on this target, so the float model is kept"
            + (
                f" — on {_rt(win.plan.runtime)}, surely faster than FP32 on {_rt(target_runtime)}: {win.speedup:.2f}x (interval {win.low:.2f}-{win.high:.2f})"
                if win is not ref
                else ""
            )
            + f". Why each candidate lost: {reasons}"
        )
    _finish(trials, ref, win)
    return win, why


def _choose_busy(trials: list[TrialRecord], ref: TrialRecord, target_runtime: str, machine: dict) -> tuple[TrialRecord, str]:
    """The machine stayed busy through every race: no speed-up is claimed, and none is acted on. Load biases
    a race (the larger model loses more when a core is shared), so a candidate that only looked faster is
    not picked: the float model on the target's runtime is kept (known safe), the candidates' estimates are
    reported without intervals, and the verdict says the search was inconclusive."""
    for t in trials:
        if t.speedup is not None:
            t.low = t.high = None  # an interval from a biased measurement is no interval
    looked = [t for t in trials if t.status == "ok" and t.plan.pass_type is not None and t.speedup is not None and t.speedup > 1.0]
    lead = max(looked, key=lambda t: t.speedup or 0.0) if looked else None
    why = (
        f"SPEED-UPS NOT CLAIMED: the machine was busy through every timing ({'; '.join(machine.get('reasons', []))}), "
        "which biases the race, so the float model is kept (nothing unconfirmed is shipped)"
        + (f"; {lead.plan.name} looked fastest ({lead.speedup:.2f}x, unconfirmed)" if lead is not None else "")
        + ". INCONCLUSIVE: re-run optimize on a quiet machine to decide."
    )
    for t in looked:
        t.reason = f"{t.speedup:.2f}x FP32 timed on a busy machine: not confirmed, so not picked"
    _finish(trials, ref, ref)
    return ref, why


def _finish(trials: list[TrialRecord], ref: TrialRecord, win: TrialRecord) -> None:
    for t in trials:
        if t.status == "ok" and t is not win:
            t.status = "reference" if t is ref else t.status
            t.reason = t.reason or ("" if t is ref else f"{t.speedup:.2f}x FP32: less than the winner" if t.speedup else "")
    win.status = "winner"


def _where(res: OptimizeResult) -> str:
    node = next((t.timing_node for t in res.trials if t.timing_node), "")
    return f"on device {node.removeprefix('device:')} over SSH" if node.startswith("device:") else "on this machine"


def _rt(runtime: str) -> str:
    return {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}.get(runtime, runtime)


def _final_recipe(recipe: Any, winner: TrialRecord, profile: Any, out: Path, torch_passes: list) -> Any:
    """The recipe that reproduces the winner: its pass (if any) on its runtime's profile. A float winner
    is not judged on speed-up over FP32 (it *is* FP32; its speed-up over the target's FP32 is in optimize.md)."""

    passes = list(torch_passes)
    if winner.plan.pass_type:
        passes.append(PassSpec.model_validate({"type": winner.plan.pass_type, **winner.plan.options}))
    else:
        profile = profile.model_copy(update={"budgets": [g for g in profile.budgets if g.metric != "speedup_vs_fp32"]})
    if profile.name in builtin_names() and load_profile(profile.name) == profile:
        prof_ref = profile.name
    else:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "target.profile.yaml"
        atomic_write_text(path, yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False))
        prof_ref = str(path)
    spec = TargetSpec.model_validate({**recipe.targets[0].model_dump(), "profile": prof_ref})
    return recipe.model_copy(update={"passes": passes, "targets": [spec], "output_dir": str(out)})


def _write(res: OptimizeResult, final: Any, profile: Any) -> str | None:

    atomic_write_text(res.out_dir / "optimized.yaml", final.to_yaml())
    write(optimize_report(res, profile), res.out_dir, "optimize")
    return engine.store_study(res.trials, res.out_dir, "optimize", {"accuracy": "maximize", "speedup": "maximize"})


def optimize_report(res: OptimizeResult, profile: Any) -> Report:
    w = res.winner
    m = res.machine or {}
    facts = [
        f"- model: {res.structure.describe()} ({', '.join(res.structure.kinds) or 'plain'})",
        f"- target `{profile.name}` ({_rt(profile.backend)}); accuracy budgets: "
        + ", ".join(f"{g.metric} {g.goal} {g.value:g}" for g in profile.budgets if not g.metric.startswith(("latency_", "speedup", "artifact", "peak"))),
        "- float reference: " + ", ".join(f"{k} {v:.4g}" for k, v in res.reference.items()),
        f"- latency: batch {res.batch}, timed {_where(res)}, every model interleaved in one process; speed-up over FP32 on {_rt(profile.backend)} "
        "with a 95% bootstrap interval over rounds (wall time of each plain API call, numpy in and out, for every runtime: "
        "what an application pays, the same clock for all)",
        f"- machine while timing: {'BUSY — ' + '; '.join(m.get('reasons', [])) + ' (no speed-up claimed)' if res.claims_withheld else 'quiet'}"
        + (f" (other processes {m['others_cores']:.2f} cores, steal {m.get('steal') or 0:.0%})" if m.get("others_cores") is not None else ""),
        f"- search: {len(res.trials)} candidates in {res.seconds:.0f} s; the final run of the winner: {res.verdict}",
    ]
    task = next((k for t in res.trials for k in t.metrics if k not in FIDELITY_METRICS), None)
    table = Table(["candidate", "runtime", "settings", "why tried", task or "task metric", "cosine", "R²", "decisions kept", "speed-up (interval)", "result"])
    for t in res.trials:
        top1 = f"{t.metrics[task]:.2f}" if task and task in t.metrics else "—"
        cos = f"{t.metrics['cosine']:.4f}" if "cosine" in t.metrics else "—"
        r2 = f"{t.metrics['output_fidelity']:.4f}" if "output_fidelity" in t.metrics else "—"
        kept = f"{100 * t.metrics['decision_agreement']:.1f}%" if "decision_agreement" in t.metrics else "—"
        sp = (
            f"{t.speedup:.2f}x ({t.low:.2f}-{t.high:.2f})"
            if t.speedup is not None and t.low is not None
            else f"~{t.speedup:.2f}x (busy machine: not claimed)"
            if t.speedup is not None
            else "—"
        )
        settings = json.dumps(t.plan.options) if t.plan.pass_type else "float"
        result = Markup("**winner**") if t.status == "winner" else f"{t.status}: {t.reason}" if t.reason else t.status
        table.rows.append([t.plan.name, _rt(t.plan.runtime), md_code(f"{t.plan.pass_type or ''} {settings}"), t.plan.why, top1, cos, r2, kept, sp, result])
        table.row_status.append({"winner": "pass", "failed": "fail", "accuracy": "fail"}.get(t.status, ""))
    sections = [Section("", table=table)]
    tr = res.training
    if tr:
        best = tr["best"]
        text = (
            f"{tr['trials']} trial(s), front {tr['front']}; "
            + (
                f"its best: #{best['number']} ({md(best['label'])}), {best['speedup']:.2f}x FP32, accuracy {best['accuracy']:.4g}, {best['size_mb']:.3g} MB. "
                if best
                else ""
            )
            + ("**Chosen**: " if tr["chosen"] else "Not chosen: ")
            + md(tr["why"])
        )
        budget = f"{tr['epochs']} recovery epochs per trial" if tr.get("epochs") else f"{tr.get('minutes') or 0:g} min of training shared by its trials"
        labels = "with labels" if tr.get("labelled") else "without labels: recovered from the original model"
        sections.append(Section(f"Training search ({budget}, {labels}; `search/search.md` has every trial)", [text]))
    return Report(
        f"edgesmith optimize: {md(w.plan.name)}",
        res.verdict,
        facts,
        [f"**Why**: {md(res.explanation)}"],
        sections,
        trial_checks(res.trials, f"edgesmith.optimize.{profile.name}"),
        res.as_dict(),
    )
