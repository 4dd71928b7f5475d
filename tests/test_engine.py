"""The one search engine (edgesmith/engine.py): the loop every preset runs — propose, build, time, tell —
its time budget, its timing of a wave, and the study every preset's trials are stored in."""

from __future__ import annotations

import time

from edgesmith import engine
from edgesmith.engine import Timing, TrialRecord


class _Counting:
    """A preset proposing ``waves`` waves of ``width`` trials; builds succeed except where told; times all."""

    def __init__(self, waves: int, width: int, fail: set[int] = frozenset(), build_s: float = 0.0):
        self.waves, self.width, self.fail, self.build_s = waves, width, fail, build_s
        self.told: list[list[int]] = []
        self.measured: list[int] = []

    def propose(self, done, out_of_time):
        if out_of_time or len(done) >= self.waves * self.width:
            return []
        return [TrialRecord(len(done) + i, {"i": len(done) + i}, f"t{len(done) + i}", "pending") for i in range(self.width)]

    def build(self, wave, out_of_time):
        time.sleep(self.build_s)
        for r in wave:
            if r.number in self.fail:
                r.state, r.error = "failed", "boom"
            else:
                r.state, r.artifact, r.metrics = "complete", f"art{r.number}", {"top1": 90.0 + r.number}

    def timing(self, wave):
        return Timing("ref", {}, 1, self._measure), [r for r in wave if r.state == "complete"]

    def _measure(self, artifacts, ref, feeds, threads, reporter=None, errors=None, rounds=10):
        assert ref == "ref" and rounds == 10
        self.measured += [int(a[3:]) for a in artifacts]
        out = []
        for i, a in enumerate(artifacts):
            if a == "art2":  # this one cannot be timed
                errors[i] = "the child died"
                out.append(None)
            else:
                n = int(a[3:])
                out.append({"speedup": 1.0 + n, "low": 0.9 + n, "high": 1.1 + n, "p50_ms": 1.0, "fp32_p50_ms": 2.0, "busy": False})
        return out, {"busy": False}, "here"

    def tell(self, wave):
        self.told.append([r.number for r in wave])


def test_the_loop_proposes_builds_times_only_built_trials_and_tells_every_wave():
    p = _Counting(waves=3, width=2, fail={1})
    out = engine.run(p)
    assert [r.number for r in out.records] == [0, 1, 2, 3, 4, 5] and p.told == [[0, 1], [2, 3], [4, 5]]
    assert p.measured == [0, 2, 3, 4, 5]  # the failed build is never timed
    by = {r.number: r for r in out.records}
    assert by[1].state == "failed" and by[1].speedup is None
    assert by[2].state == "failed" and by[2].error == "timing failed: the child died"
    assert (by[3].speedup, by[3].low, by[3].high, by[3].timing_node) == (4.0, 3.9, 4.1, "here")
    assert by[3].timing == {"p50_ms": 1.0, "fp32_p50_ms": 2.0} and by[3].p50_ms == 1.0
    assert out.machine == {"busy": False} and not out.out_of_time


def test_the_time_budget_stops_proposals_after_the_wave_that_spent_it():
    p = _Counting(waves=50, width=1, build_s=0.05)
    out = engine.run(p, time_budget_s=0.12)
    assert out.out_of_time and 1 <= len(out.records) < 50  # stops once spent (a loaded machine may spend it in one wave)


def test_records_round_trip_to_a_study_with_their_whole_record(tmp_path):
    import optuna

    recs = [
        TrialRecord(0, {"a": 1}, "ok", "complete", accuracy=0.9, speedup=1.5, metrics={"top1": 0.9}, artifact=object()),
        TrialRecord(1, {"a": 2}, "broken", "failed", error="x"),
        TrialRecord(2, {"a": 3}, "untimed", "complete", accuracy=0.8),  # no speed-up: stored, not as complete
    ]
    assert engine.store_study(recs, tmp_path, "optimize", {"accuracy": "maximize", "speedup": "maximize"}) is None
    study = optuna.load_study(study_name="edgesmith-optimize", storage=f"sqlite:///{tmp_path / 'study.db'}")
    trials = study.get_trials()
    assert [t.user_attrs["label"] for t in trials] == ["ok", "broken", "untimed"]
    assert trials[0].values == [0.9, 1.5] and trials[0].user_attrs["metrics"] == {"top1": 0.9}
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "FAIL"]
    assert not (tmp_path / ".study.db.tmp").exists()
    engine.store_study(recs[:1], tmp_path, "optimize", {"accuracy": "maximize", "speedup": "maximize"})  # a re-run replaces it
    assert len(optuna.load_study(study_name="edgesmith-optimize", storage=f"sqlite:///{tmp_path / 'study.db'}").get_trials()) == 1
