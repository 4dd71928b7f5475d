"""``edgesmith tune``: search quantization settings until the target's accuracy budget holds.

The float model is exported once (after any torch-level passes in the recipe); each candidate is a
``ptq_int8`` configuration quantized from that export and evaluated with ONNX Runtime on the recipe's
evaluation data against the target profile's accuracy budgets (task-metric degradation, cosine, SQNR).
Stages, cheapest first, each tried only if the one before found nothing within budget:

1. calibration method (the recipe's, min-max, entropy, percentile 99.999 / 99.99);
2. weight granularity flipped (per-channel <-> per-tensor) on the best so far;
3. layers kept in float, ranked by sensitivity: ONNX Runtime's QDQ debugger (``qdq_loss_debug``)
   measures each quantized activation's SQNR against the float model's; the nodes reading the worst
   activations are excluded, 1, 2, 4, ... at a time (up to half of them).

The best candidate — within budget with the fewest float layers and the best metric, else the one
closest to the budget — is always written, with every candidate's numbers, even when none meets the
budget or the time budget runs out: ``tune.md``/``.json``/``.html``/``.junit.xml``, ``tuned.yaml`` (the recipe with the
winning settings) and the full run of that recipe (artifact, report, manifest) in the output directory.
Torch-level mixed bit-widths (``mixed_precision``) are not in this search yet.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesmith import engine, pipeline
from edgesmith.cache import PassCache
from edgesmith.compress import PassContext, build_pass_config, get_pass
from edgesmith.compress.quantize.onnx_common import DatasetReader, onnx_input_names
from edgesmith.engine import TrialRecord
from edgesmith.errors import ConfigError
from edgesmith.evaluate import accuracy_profile, gap_text, judge, shortfall
from edgesmith.metrics import FIDELITY_METRICS
from edgesmith.outputs import atomic_write_text, check_output_dir
from edgesmith.profiles import load_profile
from edgesmith.progress import Reporter
from edgesmith.recipe import PassSpec
from edgesmith.report import md, md_code
from edgesmith.reporting.document import Report, Section, Table, trial_checks, write


@dataclass
class TuneResult:
    candidates: list[TrialRecord]
    best: TrialRecord | None
    out_dir: Path
    verdict: (
        str  # pass | inconclusive (the final run's latency budget could not be decided) | fail (no candidate within budget, or the final run failed a budget)
    )
    stopped: str  # why the search ended
    reference: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "stopped": self.stopped,
            "reference": self.reference,
            "best": self.best.as_dict() if self.best else None,
            "candidates": [c.as_dict() for c in self.candidates],
        }


def tune(
    recipe: Any,
    base_dir: Path,
    *,
    out_dir: Path | None = None,
    time_budget_s: float = 300.0,
    reporter: Any = None,
    force: bool = False,
    trust_checkpoint: bool = False,
    cache_dir: Path | None = None,
) -> TuneResult:

    rep = reporter or Reporter()
    profile, acc_profile, base_opts = _check(recipe, base_dir)
    out = Path(out_dir or recipe.output_dir)
    if not out.is_absolute() and out_dir is None:
        out = base_dir / out
    check_output_dir(out, force)
    torch_passes = [p for p in recipe.passes if get_pass(p.type).stage == "torch"]
    with tempfile.TemporaryDirectory(prefix="edgesmith-tune-") as tmp:
        work = Path(tmp)
        with rep.step("exporting the float model once"):
            float_path, start = pipeline.export_once(recipe, base_dir, work, trust_checkpoint, PassCache(Path(cache_dir)) if cache_dir else None)
        search = _Stages(_Candidates(recipe, base_dir, float_path, acc_profile, profile, work), start, work, time_budget_s, base_opts, rep)
        best = search.run()
    final = recipe.model_copy(update={"passes": torch_passes + [_pass_spec(best.params)]})
    with rep.step("full run of the best configuration"):
        result = pipeline.run(final, base_dir, out_dir=out, reporter=rep, force=True, trust_checkpoint=trust_checkpoint)  # NOTE: the policy was checked above
    verdict = result.verdict if best.feasible and result.verdict in ("pass", "inconclusive") else "fail"
    tr = TuneResult(search.cands, best, out, verdict, search.stopped, search.ev.reference)
    atomic_write_text(out / "tuned.yaml", final.model_copy(update={"output_dir": str(out)}).to_yaml())
    write(tune_report(tr, profile), out, "tune")
    note = engine.store_study(tr.candidates, out, "tune", {"accuracy": "maximize"})
    if note:
        rep.info(note)
    return tr


def _check(recipe: Any, base_dir: Path) -> tuple[Any, Any, dict]:
    """What tune can search: one ONNX Runtime target with an accuracy budget, at most one ptq_int8 pass."""

    if recipe.optimize:
        raise ConfigError(
            "the recipe says `passes: auto`; tune searches ptq_int8 settings", hint="run it with `edgesmith run` (or optimize), or list a ptq_int8 pass"
        )
    if len(recipe.targets) != 1:
        raise ConfigError(f"tune works on one target, the recipe has {len(recipe.targets)}", hint="keep one entry under `targets:`")
    onnx_passes = [p for p in recipe.passes if get_pass(p.type).stage == "onnx"]
    if any(p.type != "ptq_int8" for p in onnx_passes) or len(onnx_passes) > 1:
        raise ConfigError(
            f"tune searches ptq_int8 settings; the recipe has ONNX passes {[p.type for p in onnx_passes]}",
            hint="leave one ptq_int8 pass (or none) after any torch-level passes",
        )
    if recipe.data.evaluation is None or recipe.data.calibration is None:
        raise ConfigError("tune needs calibration and evaluation data", hint="add `data: {calibration: ..., evaluation: ...}`")
    target = recipe.targets[0]
    profile = load_profile(target.profile, base_dir).with_overrides(target.budgets, target.threads, target.batch_sizes)
    if profile.backend != "onnxruntime":
        raise ConfigError(
            f"tune searches ONNX Runtime quantization; target {profile.name} runs {profile.backend}",
            hint="tune for an onnxruntime profile (OpenVINO targets: use nncf_ptq)",
        )
    acc_profile = accuracy_profile(profile)
    if not acc_profile.budgets:
        raise ConfigError(f"profile {profile.name} has no accuracy budget to tune for", hint="add e.g. {metric: top1, goal: max-degradation, value: 0.5}")
    return profile, acc_profile, (dict(onnx_passes[0].options) if onnx_passes else {})


class _Stages:
    """tune's preset of the engine: one trial at a time, each stage proposed from the results so far —
    calibration methods, then the weight granularity flipped on the best, then layers kept in float."""

    def __init__(self, ev: _Candidates, start: Path, work: Path, time_budget_s: float, base_opts: dict, rep: Any):
        self.ev, self.start, self.work, self.budget, self.base_opts, self.rep = ev, start, work, time_budget_s, base_opts, rep
        self.cands: list[TrialRecord] = []
        self.stopped = "a stage found settings within the budget"
        self.queue: list[tuple[str, dict, str]] = self._calibration()
        self.stage = "calibration"
        self.ranked: list[str] = []
        self.k = 1

    def run(self) -> TrialRecord:
        out = engine.run(self, self.budget, self.rep)
        self.cands = out.records
        best = _best(self.cands)
        if out.out_of_time and (best is None or not best.feasible):
            self.stopped = f"time budget ({self.budget:.0f} s) spent"
        elif best is None or not best.feasible:
            self.stopped = "every stage tried; none within the budget"
        if best is None:
            raise ConfigError(
                "every tune candidate failed: " + "; ".join(c.error for c in self.cands)[:300],
                hint="run the recipe once with `edgesmith run` to see the error in full",
            )
        return best

    def propose(self, done: list[TrialRecord], out_of_time: bool) -> list[TrialRecord]:
        if out_of_time:
            return []
        if not self.queue:
            self._next_stage(done)
        if not self.queue:
            return []
        stage, opts, what = self.queue.pop(0)
        return [TrialRecord(len(done), opts, what, "pending", stage=stage)]

    def _next_stage(self, done: list[TrialRecord]) -> None:
        best = _best(done)
        if best is not None and best.feasible:
            return
        if self.stage == "calibration":
            self.stage = "granularity"
            default = self.ev.profile.quantization.per_channel
            pc = best.params.get("per_channel", default) if best else default
            self.queue = [("granularity", dict(best.params if best else self.base_opts, per_channel=not pc), f"granularity: per_channel={not pc}")]
        elif self.stage in ("granularity", "float layers") and best is not None:
            if self.stage == "granularity":
                self.stage, self.anchor = "float layers", best
                with self.rep.step("[tune] ranking layers by sensitivity (ONNX Runtime QDQ debugger)"):
                    self.ranked = self.ev.sensitive_nodes(self.start, best, self.work / "sens")
            else:
                self.k *= 2
            if self.k <= max(1, len(self.ranked) // 2):
                keep = sorted(set(self.anchor.params.get("exclude_nodes", [])) | set(self.ranked[: self.k]))
                self.queue = [("float layers", dict(self.anchor.params, exclude_nodes=keep), f"keeping {self.k} most sensitive layer(s) in float")]

    def build(self, wave: list[TrialRecord], out_of_time: Any) -> None:
        for t in wave:
            with self.rep.step(f"[tune] {t.label}"):
                self.ev.evaluate(t, self.start, self.work / f"cand{t.number}")

    def timing(self, wave: list[TrialRecord]) -> None:
        return None  # tune judges accuracy only; the final run of the best times it

    def tell(self, wave: list[TrialRecord]) -> None:
        pass

    def _calibration(self) -> list[tuple[str, dict, str]]:
        calibs: list[dict[str, Any]] = [
            {"calibration": "minmax"},
            {"calibration": "entropy"},
            {"calibration": "percentile", "percentile": 99.999},
            {"calibration": "percentile", "percentile": 99.99},
        ]
        rest = {k: v for k, v in self.base_opts.items() if k not in ("calibration", "percentile")}
        seen: list[dict] = []
        for opts in [dict(self.base_opts)] + [dict(rest, **c) for c in calibs]:
            if opts not in seen:
                seen.append(opts)
        return [("calibration", opts, f"calibration: {json.dumps(opts) if opts else 'recipe settings'}") for opts in seen]


def _pass_spec(options: dict) -> Any:

    return PassSpec.model_validate({"type": "ptq_int8", **options})


def _best(cands: list[TrialRecord]) -> TrialRecord | None:
    """Within budget with the fewest layers in float and the best metric; else the closest to the budget."""
    ok = [c for c in cands if c.state == "complete"]
    if not ok:
        return None
    score = lambda c: c.accuracy if c.accuracy is not None else float("-inf")  # noqa: E731
    meeting = [c for c in ok if c.feasible]
    if meeting:
        return min(meeting, key=lambda c: (len(c.params.get("exclude_nodes", [])), -score(c)))
    return min(ok, key=lambda c: (c.shortfall, -score(c)))


class _Candidates:
    """Quantizes one candidate and judges its accuracy on the evaluation set with ONNX Runtime,
    through the one evaluator (the float reference computed once, on the target's runtime)."""

    def __init__(self, recipe: Any, base_dir: Path, float_path: Path, acc_profile: Any, profile: Any, work: Path):

        self.recipe, self.acc_profile, self.profile = recipe, acc_profile, profile
        setup = pipeline.search_setup(recipe, base_dir, float_path, profile, work)
        self.specs, self.calib, self.evaluation = setup.specs, setup.calibration, setup.evaluation
        self.backend, self.evaluator, self.ref = setup.backend, setup.evaluator, setup.reference
        self.reference = dict(self.ref.metrics)

    def evaluate(self, c: TrialRecord, start: Path, work: Path) -> None:

        opts = c.params
        t0 = time.perf_counter()
        work.mkdir(parents=True, exist_ok=True)
        try:
            ctx = PassContext(work_dir=work, profile=self.profile, input_specs=tuple(self.specs), calibration=self.calib)
            path = get_pass("ptq_int8").apply(start, build_pass_config("ptq_int8", opts), ctx)
            artifact = self.backend.compile(path, work / f"model{self.backend.artifact_suffix}", self.profile, self.specs)
            c.metrics = dict(self.evaluator.evaluate(self.backend, artifact, self.profile.threads, self.ref).metrics)
        except Exception as exc:  # noqa: BLE001 - one candidate's failure is reported and the search goes on
            c.state, c.error = "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            c.seconds = time.perf_counter() - t0
            return
        verdicts = [v for v in judge(self.acc_profile, c.metrics, self.reference) if v.status != "n/a"]
        c.state, c.feasible = "complete", all(v.status == "pass" for v in verdicts)
        failing = [v for v in verdicts if v.status == "fail"]
        c.gaps = [gap_text(v) for v in failing]
        c.shortfall = sum(shortfall(v) for v in failing)
        key = next((k for k in c.metrics if k not in FIDELITY_METRICS), "output_fidelity")
        c.accuracy = c.metrics[key]  # the task metric (or the output's fidelity): higher is better
        c.seconds = time.perf_counter() - t0

    def sensitive_nodes(self, start: Path, best: TrialRecord, work: Path) -> list[str]:
        """Quantized compute nodes, most sensitive first: those whose input activation the QDQ model
        reproduces worst (lowest SQNR against the float model's activation)."""
        import onnx
        from onnxruntime.quantization import qdq_loss_debug as dbg

        work.mkdir(parents=True, exist_ok=True)
        opts = {k: v for k, v in best.params.items() if k != "exclude_nodes"}
        ctx = PassContext(work_dir=work, profile=self.profile, input_specs=tuple(self.specs), calibration=self.calib)
        qdq = get_pass("ptq_int8").apply(start, build_pass_config("ptq_int8", opts), ctx)
        pre = work / "ptq_int8.pre.onnx"
        names = onnx_input_names(pre)
        n = min(64, self.calib.num_samples)
        dbg.modify_model_output_intermediate_tensors(str(pre), str(work / "float.aug.onnx"))
        dbg.modify_model_output_intermediate_tensors(str(qdq), str(work / "qdq.aug.onnx"))
        f_act = dbg.collect_activations(str(work / "float.aug.onnx"), DatasetReader(self.calib, names, n))
        q_act = dbg.collect_activations(str(work / "qdq.aug.onnx"), DatasetReader(self.calib, names, n))
        errors = dbg.compute_activation_error(dbg.create_activation_matching(q_act, f_act))
        graph = onnx.load(str(pre), load_external_data=False).graph
        compute = {"Conv", "MatMul", "Gemm", "ConvTranspose"}
        score: dict[str, float] = {}
        for node in graph.node:
            if node.op_type in compute and node.input and node.input[0] in errors:
                err = errors[node.input[0]].get("xmodel_err")
                if err is not None:
                    score[node.name] = float(err)
        return sorted(score, key=lambda n: score[n])  # lowest SQNR first


def tune_report(tr: TuneResult, profile: Any) -> Report:
    best = tr.best
    facts = [
        f"- target `{profile.name}`; accuracy budgets: " + ", ".join(f"{g.metric} {g.goal} {g.value:g}" for g in accuracy_profile(profile).budgets),
        "- float reference: " + ", ".join(f"{k} {v:.4g}" for k, v in tr.reference.items() if v != float("inf")),
        f"- search ended: {tr.stopped}; {len(tr.candidates)} candidate(s)",
    ]
    summary = []
    if best:
        summary.append(
            f"**Best**: {best.stage} {md_code(json.dumps(best.params))} — "
            + ", ".join(f"{k} {v:.6g}" for k, v in best.metrics.items())
            + ("" if best.feasible else f" — **gap**: {md('; '.join(best.gaps))}")
        )
    table = Table(["#", "stage", "settings", "metrics", "within budget", "seconds"])
    for i, c in enumerate(tr.candidates):
        m = c.error or ", ".join(f"{k} {v:.6g}" for k, v in c.metrics.items())
        ok = "yes" if c.feasible else ("error" if c.error else f"no ({'; '.join(c.gaps)})")
        table.rows.append([i, c.stage, md_code(json.dumps(c.params)), m, ok, f"{c.seconds:.1f}"])
        table.row_status.append("pass" if c.feasible else "fail")
    return Report(
        f"edgesmith tune: {'within budget' if best and best.feasible else 'NO setting within budget'}",
        tr.verdict,
        facts,
        summary,
        [Section("", table=table)],
        trial_checks(tr.candidates, f"edgesmith.tune.{profile.name}"),
        tr.as_dict(),
    )
