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
budget or the time budget runs out: ``tune.json``, ``tune.md``, ``tuned.yaml`` (the recipe with the
winning settings) and the full run of that recipe (artifact, report, manifest) in the output directory.
Torch-level mixed bit-widths (``mixed_precision``) are not in this search yet.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgesmith.errors import ConfigError
from edgesmith.evaluate import accuracy_profile
from edgesmith.report import md_code, md_row, md_table


@dataclass
class Candidate:
    stage: str
    options: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    meets: bool = False
    gap: str = ""
    score: float = float("-inf")  # the task metric (or cosine): higher is better
    shortfall: float = 0.0  # how far outside its budgets, relative (0 when within)
    error: str | None = None
    seconds: float = 0.0

    @property
    def excluded(self) -> int:
        return len(self.options.get("exclude_nodes", []))


@dataclass
class TuneResult:
    candidates: list[Candidate]
    best: Candidate | None
    out_dir: Path
    verdict: str  # pass | fail (no candidate within budget, or the final run failed a budget)
    stopped: str  # why the search ended
    reference: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "stopped": self.stopped,
            "reference": self.reference,
            "best": asdict(self.best) if self.best else None,
            "candidates": [asdict(c) for c in self.candidates],
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
) -> TuneResult:
    import tempfile

    from edgesmith import pipeline
    from edgesmith.compress import get_pass
    from edgesmith.outputs import atomic_write_text, check_output_dir
    from edgesmith.progress import Reporter

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
            float_path, start = pipeline.export_once(recipe, base_dir, work, trust_checkpoint)
        search = _Search(_Candidates(recipe, base_dir, float_path, acc_profile, profile, work), start, work, time_budget_s, rep)
        best = search.run_stages(base_opts, profile)
    final = recipe.model_copy(update={"passes": torch_passes + [_pass_spec(best.options)]})
    with rep.step("full run of the best configuration"):
        result = pipeline.run(final, base_dir, out_dir=out, reporter=rep, force=True, trust_checkpoint=trust_checkpoint)  # NOTE: the policy was checked above
    verdict = "pass" if best.meets and result.verdict == "pass" else "fail"
    tr = TuneResult(search.cands, best, out, verdict, search.stopped, search.ev.reference)
    atomic_write_text(out / "tune.json", json.dumps(tr.as_dict(), indent=1, default=str) + "\n")
    atomic_write_text(out / "tuned.yaml", final.model_copy(update={"output_dir": str(out)}).to_yaml())
    atomic_write_text(out / "tune.md", render_tune(tr, profile))
    return tr


def _check(recipe: Any, base_dir: Path) -> tuple[Any, Any, dict]:
    """What tune can search: one ONNX Runtime target with an accuracy budget, at most one ptq_int8 pass."""
    from edgesmith.compress import get_pass
    from edgesmith.profiles import load_profile

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


class _Search:
    """The staged search over one export: calibration, then granularity, then layers kept in float."""

    def __init__(self, ev: _Candidates, start: Path, work: Path, time_budget_s: float, rep: Any):
        self.ev, self.start, self.work, self.budget, self.rep = ev, start, work, time_budget_s, rep
        self.cands: list[Candidate] = []
        self.started = time.time()
        self.stopped = "a stage found settings within the budget"

    def _out_of_time(self) -> bool:
        if time.time() - self.started > self.budget:
            self.stopped = f"time budget ({self.budget:.0f} s) spent"
            return True
        return False

    def _try(self, stage: str, opts: dict, what: str) -> Candidate:
        with self.rep.step(f"[tune] {what}"):
            c = self.ev.evaluate(stage, opts, self.start, self.work / f"cand{len(self.cands)}")
        self.cands.append(c)
        return c

    def run_stages(self, base_opts: dict, profile: Any) -> Candidate:
        self._calibration(base_opts)
        best = _best(self.cands)
        if (best is None or not best.meets) and not self._out_of_time():
            pc = best.options.get("per_channel", profile.quantization.per_channel) if best else profile.quantization.per_channel
            self._try("granularity", dict(best.options if best else base_opts, per_channel=not pc), f"granularity: per_channel={not pc}")
            best = _best(self.cands)
        if best is not None and not best.meets and not self._out_of_time():
            self._float_layers(best)
            best = _best(self.cands)
        if best is None or not best.meets:
            self.stopped = self.stopped if "time budget" in self.stopped else "every stage tried; none within the budget"
        if best is None:
            raise ConfigError(
                "every tune candidate failed: " + "; ".join(c.error or "" for c in self.cands)[:300],
                hint="run the recipe once with `edgesmith run` to see the error in full",
            )
        return best

    def _calibration(self, base_opts: dict) -> None:
        calibs: list[dict[str, Any]] = [
            {"calibration": "minmax"},
            {"calibration": "entropy"},
            {"calibration": "percentile", "percentile": 99.999},
            {"calibration": "percentile", "percentile": 99.99},
        ]
        rest = {k: v for k, v in base_opts.items() if k not in ("calibration", "percentile")}
        seen: list[dict] = []
        for opts in [dict(base_opts)] + [dict(rest, **c) for c in calibs]:
            if opts in seen:
                continue
            seen.append(opts)
            if self._out_of_time():
                break
            self._try("calibration", opts, f"calibration: {opts or 'recipe settings'}")

    def _float_layers(self, best: Candidate) -> None:
        with self.rep.step("[tune] ranking layers by sensitivity (ONNX Runtime QDQ debugger)"):
            ranked = self.ev.sensitive_nodes(self.start, best, self.work / "sens")
        k = 1
        while k <= max(1, len(ranked) // 2):
            if self._out_of_time():
                break
            opts = dict(best.options, exclude_nodes=sorted(set(best.options.get("exclude_nodes", [])) | set(ranked[:k])))
            if self._try("float layers", opts, f"keeping {k} most sensitive layer(s) in float").meets:
                break
            k *= 2


def _pass_spec(options: dict) -> Any:
    from edgesmith.recipe import PassSpec

    return PassSpec.model_validate({"type": "ptq_int8", **options})


def _best(cands: list[Candidate]) -> Candidate | None:
    ok = [c for c in cands if c.error is None]
    if not ok:
        return None
    meeting = [c for c in ok if c.meets]
    if meeting:
        return min(meeting, key=lambda c: (c.excluded, -c.score))
    return min(ok, key=lambda c: (c.shortfall, -c.score))  # the closest to the budget


class _Candidates:
    """Quantizes one candidate and judges its accuracy on the evaluation set with ONNX Runtime,
    through the one evaluator (the float reference computed once, on the target's runtime)."""

    def __init__(self, recipe: Any, base_dir: Path, float_path: Path, acc_profile: Any, profile: Any, work: Path):
        from edgesmith import pipeline

        self.recipe, self.acc_profile, self.profile = recipe, acc_profile, profile
        setup = pipeline.search_setup(recipe, base_dir, float_path, profile, work)
        self.specs, self.calib, self.evaluation = setup.specs, setup.calibration, setup.evaluation
        self.backend, self.evaluator, self.ref = setup.backend, setup.evaluator, setup.reference
        self.reference = dict(self.ref.metrics)

    def evaluate(self, stage: str, opts: dict, start: Path, work: Path) -> Candidate:
        from edgesmith.compress import PassContext, build_pass_config, get_pass
        from edgesmith.evaluate import gap_text, judge, shortfall

        c = Candidate(stage, dict(opts))
        t0 = time.perf_counter()
        work.mkdir(parents=True, exist_ok=True)
        try:
            ctx = PassContext(work_dir=work, profile=self.profile, input_specs=tuple(self.specs), calibration=self.calib)
            path = get_pass("ptq_int8").apply(start, build_pass_config("ptq_int8", opts), ctx)
            artifact = self.backend.compile(path, work / f"model{self.backend.artifact_suffix}", self.profile, self.specs)
            c.metrics = dict(self.evaluator.evaluate(self.backend, artifact, self.profile.threads, self.ref).metrics)
        except Exception as exc:  # noqa: BLE001 - one candidate's failure is reported and the search goes on
            c.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            c.seconds = time.perf_counter() - t0
            return c
        verdicts = [v for v in judge(self.acc_profile, c.metrics, self.reference) if v.status != "n/a"]
        c.meets = all(v.status == "pass" for v in verdicts)
        failing = [v for v in verdicts if v.status == "fail"]
        c.gap = "; ".join(gap_text(v) for v in failing)
        c.shortfall = sum(shortfall(v) for v in failing)
        from edgesmith.metrics import FIDELITY_METRICS

        key = next((k for k in c.metrics if k not in FIDELITY_METRICS), "output_fidelity")
        c.score = c.metrics[key]
        c.seconds = time.perf_counter() - t0
        return c

    def sensitive_nodes(self, start: Path, best: Candidate, work: Path) -> list[str]:
        """Quantized compute nodes, most sensitive first: those whose input activation the QDQ model
        reproduces worst (lowest SQNR against the float model's activation)."""
        import onnx
        from onnxruntime.quantization import qdq_loss_debug as dbg

        from edgesmith.compress import PassContext, build_pass_config, get_pass
        from edgesmith.compress.quantize.onnx_common import DatasetReader, onnx_input_names

        work.mkdir(parents=True, exist_ok=True)
        opts = {k: v for k, v in best.options.items() if k != "exclude_nodes"}
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


def render_tune(tr: TuneResult, profile: Any) -> str:
    lines = [
        f"# edgesmith tune: {'within budget' if tr.best and tr.best.meets else 'NO setting within budget'}",
        "",
        f"- target `{profile.name}`; accuracy budgets: " + ", ".join(f"{g.metric} {g.goal} {g.value:g}" for g in accuracy_profile(profile).budgets),
        "- float reference: " + ", ".join(f"{k} {v:.4g}" for k, v in tr.reference.items() if v != float("inf")),
        f"- search ended: {tr.stopped}; {len(tr.candidates)} candidate(s)",
        "",
    ]
    if tr.best:
        lines += [
            f"**Best**: {tr.best.stage} {json.dumps(tr.best.options)} — "
            + ", ".join(f"{k} {v:.6g}" for k, v in tr.best.metrics.items())
            + ("" if tr.best.meets else f" — **gap**: {tr.best.gap}"),
            "",
        ]
    lines += md_table(["#", "stage", "settings", "metrics", "within budget", "seconds"])
    for i, c in enumerate(tr.candidates):
        m = c.error or ", ".join(f"{k} {v:.6g}" for k, v in c.metrics.items())
        ok = "yes" if c.meets else ("error" if c.error else f"no ({c.gap})")
        lines.append(md_row([i, c.stage, md_code(json.dumps(c.options)), m, ok, f"{c.seconds:.1f}"]))
    return "\n".join(lines) + "\n"
