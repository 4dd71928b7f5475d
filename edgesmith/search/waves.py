"""The search preset of the engine (edgesmith/engine.py): the study asks for a wave of trials, the pool builds
them side by side, the engine times them alone, the study is told.

Why waves: a latency measured while other trials build on the same cores is wrong (they steal cycles
and cache), so the timing phase of a wave starts only when all its builds are done, and the next wave's
builds start only when its timing is done. The cost is that a wave waits for its slowest build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgesmith import engine
from edgesmith.engine import Timing, TrialRecord
from edgesmith.evaluate.judge import gap_text, judge, shortfall
from edgesmith.runtime.base import Artifact
from edgesmith.search.study import OWNER, finished, others_running, owner


class Waves:
    """The search preset of the engine (edgesmith/engine.py): the study proposes, the pool (or Ray) builds a
    wave side by side, the wave is timed alone, each trial is told to the study."""

    def __init__(
        self, study: Any, space: Any, base: dict, base_dir: Path, out: Path, profile: Any, ref: Any, executor: Any, cache: Any, settings: Any, reporter: Any
    ):
        self.study, self.space, self.base, self.base_dir, self.out = study, space, base, base_dir, out
        self.profile, self.ref, self.executor, self.cache, self.s, self.rep = profile, ref, executor, cache, settings, reporter
        self.ran = 0
        self.build_seconds = self.timing_seconds = 0.0
        self.cache_hits = self.cache_misses = 0
        self.notes: list[str] = []
        self._fp32_ms = study.user_attrs.get("fp32_p50_ms")
        self._pending: list[tuple[Any, dict]] = []
        self._optuna: dict[int, tuple[Any, dict]] = {}  # trial number -> (Optuna trial, values)
        self._built: dict[int, dict] = {}
        self._stop = False

    def run(self, resumed: list[Any], trials_wanted: int, started: float) -> None:
        from optuna.trial import Trial

        self._pending = [(Trial(self.study, t._trial_id), dict(t.params)) for t in resumed]
        self._wanted = trials_wanted
        out = engine.run(self, self.s.time_budget_s, self.rep, started)
        self.build_seconds, self.timing_seconds = out.build_seconds, out.timing_seconds
        if out.out_of_time and self.s.time_budget_s is not None and len(finished(self.study)) < trials_wanted and not self._stop:
            self.notes.append(f"stopped by the time budget ({self.s.time_budget_s / 60:.1f} min) after {len(finished(self.study))} trial(s)")

    def propose(self, done: list[TrialRecord], out_of_time: bool) -> list[TrialRecord]:
        if self._stop or (out_of_time and not self._pending):
            return []
        width = max(1, getattr(self.executor, "workers", 1))
        wave: list[tuple[Any, dict]] = []
        while self._pending and len(wave) < width:
            wave.append(self._pending.pop(0))
        # NOTE: trials another process runs on a shared study count against the budget too
        budget_left = self._wanted - len(finished(self.study)) - len(others_running(self.study)) - len(wave)
        while len(wave) < width and budget_left > 0 and not out_of_time:
            t = self.study.ask()
            wave.append((t, self.space.suggest(t)))
            budget_left -= 1
        mine = owner()
        for t, _ in wave:
            t.set_user_attr(OWNER, mine)  # this process runs it: another search on the study leaves it alone
        self._optuna.update({t.number: (t, v) for t, v in wave})
        return [TrialRecord(t.number, v, self.space.label(v), "pending") for t, v in wave]

    def build(self, wave: list[TrialRecord], out_of_time: Any) -> None:

        jobs = []
        for r in wave:
            trial_dir = str(self.out / "trials" / f"{r.number:04d}")
            recipe = {**self.base, "passes": self.space.concrete(r.params), "output_dir": trial_dir}
            cache = str(self.cache.root) if self.cache.usable else None
            jobs.append({"recipe": recipe, "base_dir": str(self.base_dir), "trial_dir": trial_dir, "cache": cache, "trust_checkpoint": self.s.trust_checkpoint})
        labels = ", ".join(f"#{r.number} {r.label}" for r in wave)
        with self.rep.step(f"[search] building {len(wave)} trial(s) side by side: {labels}"):
            built = self.executor.build_wave(jobs)
        for r, job, b in zip(wave, jobs, built):
            self._built[r.number] = b
            r.seconds, r.node = b.get("seconds") or 0.0, b.get("node", "")
            if b.get("ok"):
                r.state, r.metrics = "complete", dict(b["metrics"])
                r.artifact = Artifact(Path(job["trial_dir"]) / b["bundle"]["artifact"], self.profile.backend, b["bundle"].get("artifact_options") or {})
            else:
                r.state, r.error = "failed", b.get("error") or "the build failed"

    def timing(self, wave: list[TrialRecord]) -> tuple[Any, list[TrialRecord]] | None:

        runners = [r for r in wave if r.state == "complete"]
        if not runners:
            return None
        self.rep.info(f"[search] timing {len(runners)} trial(s) against FP32, nothing else running (batch {self.profile.batch_sizes[0]})")
        return Timing(self.ref.artifact, self.ref.feeds, self.ref.threads, self.s.measure or self.executor.measure), runners

    def tell(self, wave: list[TrialRecord]) -> None:
        from optuna.trial import TrialState

        for r in wave:
            if self._fp32_ms is None and r.timing.get("fp32_p50_ms"):
                self._fp32_ms = r.timing["fp32_p50_ms"]
                self.study.set_user_attr("fp32_p50_ms", self._fp32_ms)
        for r in wave:
            trial, values = self._optuna.pop(r.number)
            timing = {**r.timing, "speedup": r.speedup, "low": r.low, "high": r.high, "busy": r.busy} if r.timing else None
            self._tell(trial, values, self._built.pop(r.number), timing, r.timing_node, r.error)
            self.ran += 1
        if self.s.stop_when_met and any(t.user_attrs.get("feasible") for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))):
            self.notes.append("stopped early: a trial met every budget (--stop-when-met)")
            self._stop = True

    def _tell(self, trial: Any, values: dict, b: dict, timing: dict | None, node: str, error: str = "") -> None:
        from optuna.trial import TrialState

        events = b.get("cache_events") or []
        hits = sum(e["result"] == "hit" for e in events)
        self.cache_hits += hits
        self.cache_misses += len(events) - hits
        attrs = {
            "label": self.space.label(values),
            "node": b.get("node", ""),
            "seconds": b.get("seconds"),
            "cache": {"hits": hits, "misses": len(events) - hits},
            "timing_node": node,
        }
        for n in b.get("cache_notes") or []:
            if n not in self.notes:
                self.notes.append(n)
        if not b.get("ok") or timing is None:
            attrs["error"] = b.get("error") or error or "could not be timed"
            for k, v in attrs.items():
                trial.set_user_attr(k, v)
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            self.rep.info(f"[search] trial #{trial.number} failed: {attrs['error']}")
            return
        batch = self.profile.batch_sizes[0]
        metrics = dict(b["metrics"])
        for q in ("p50", "p90", "p95", "p99"):
            metrics[f"latency_{q}_ms@{batch}"] = timing[f"{q}_ms"]
        metrics[f"speedup_vs_fp32@{batch}"] = timing["speedup"]
        metrics[f"speedup_vs_fp32_low@{batch}"], metrics[f"speedup_vs_fp32_high@{batch}"] = timing["low"], timing["high"]
        reference = {**b.get("reference", {}), f"speedup_vs_fp32@{batch}": 1.0}
        verdicts = [v for v in judge(self.profile, metrics, reference) if v.status in ("pass", "fail", "inconclusive")]
        fails = [v for v in verdicts if v.status == "fail"]
        accuracy = metrics.get(self.ref.accuracy_key)
        latency = (self._fp32_ms or timing["fp32_p50_ms"]) / max(timing["speedup"], 1e-9)
        size = metrics.get("artifact_mb")
        attrs.update(
            metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))},
            speedup=timing["speedup"],
            low=timing["low"],
            high=timing["high"],
            busy=timing.get("busy", False),
            feasible=not fails,
            gaps=[gap_text(v) for v in fails],
            shortfall=sum(shortfall(v) for v in fails),
        )
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        for i, v in enumerate(verdicts):  # the budgets as Optuna constraints: > 0 when one fails (the samplers read them)
            trial.set_constraint(f"{i}:{v.metric}" + (f"@{v.batch}" if v.batch else ""), shortfall(v) if v.status == "fail" else 0.0)
        self.study.tell(trial, [float(accuracy if accuracy is not None else float("nan")), float(latency), float(size or 0.0)], skip_if_finished=True)
        self.rep.info(
            f"[search] trial #{trial.number} {attrs['label']}: {self.ref.accuracy_key} {_g(accuracy)}, {timing['speedup']:.2f}x FP32 "
            f"({latency:.3g} ms), {_g(size)} MB" + (" — within budget" if not fails else f" — {'; '.join(attrs['gaps'])}")
        )


def _g(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"
