"""edgesmith search end to end on the bundled digits CNN: the front, the study, the best run, resume
after an interruption (no trial lost or run twice), and the bad inputs the issue names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import edgesmith_exe

pytestmark = pytest.mark.slow

BASE = {
    "name": "search-test",
    "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
    "inputs": [{"name": "input", "shape": ["batch", 1, 8, 8]}],
    "data": {"calibration": {"source": "digits", "split": "train", "samples": 128}, "evaluation": {"source": "digits", "split": "test"}},
    "targets": [{"profile": "x86-avx512-vnni-ort", "batch_sizes": [1]}],
}
SPACE = [{"type": "ptq_int8", "enabled": {"search": [True, False]}, "calibration": {"search": ["minmax", "percentile"]}}]


def _recipe(tmp: Path, passes=SPACE, **extra) -> Path:
    p = tmp / "recipe.yaml"
    p.write_text(yaml.safe_dump({**BASE, "passes": passes, **extra}, sort_keys=False))
    return p


def _study(out: Path):
    import optuna

    name = (out / ".edgesmith-search").read_text().strip()
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


def _states(out: Path) -> dict[int, str]:
    return {t.number: t.state.name for t in _study(out).get_trials(deepcopy=False)}


def test_search_writes_the_front_the_study_and_the_best_run(cli, tmp_path):
    r = cli("search", _recipe(tmp_path), "--workers", "2", "--out", tmp_path / "s")
    assert r.code == 0, r.stderr[-2000:]
    out = tmp_path / "s"
    res = json.loads((out / "search.json").read_text())
    assert res["sampler"] == "grid" and len(res["trials"]) == 3  # ptq on x2 calibrations, off once
    assert all(t["state"] == "complete" for t in res["trials"])
    assert res["front"] and res["best"] in res["front"]
    assert _states(out) == {0: "COMPLETE", 1: "COMPLETE", 2: "COMPLETE"}
    best = json.loads((out / "best" / "manifest.json").read_text())
    assert best["targets"]["x86-avx512-vnni-ort"]["latency"]
    # one judge: the trial the search kept within every budget is the recipe `run` passes, on its own
    # (inconclusive: a latency budget this busy machine could not decide — never a failure, never a PASS)
    assert best["verdict"] in ("pass", "inconclusive") and next(t for t in res["trials"] if t["number"] == res["best"])["feasible"]
    again = cli("run", out / "best.yaml", "--out", tmp_path / "again")
    assert again.code == 0 and json.loads((tmp_path / "again" / "manifest.json").read_text())["verdict"] in ("pass", "inconclusive"), again.stderr[-1500:]
    assert (out / "best.yaml").is_file() and "<svg" in (out / "search.html").read_text()
    md = (out / "search.md").read_text()
    assert "## Pareto front" in md and "trials/hour" in md
    # the float export is shared by every trial (and the reference): cached after its first computation
    assert res["cache"]["hits"] >= 3, res["cache"]  # every trial, the calibrating ones too
    # builds ran side by side in separate pinned processes, timing after them
    assert "2 worker(s)" in res["executor"]
    from tests.gate.test_html_report import CHROMIUM, plots, render, root_attrs

    if CHROMIUM or os.environ.get("CI"):  # the HTML front renders in a real browser: no script error, every trial drawn
        dom = render(out / "search.html", tmp_path)
        assert root_attrs(dom).get("data-ready") == "true" and "data-script-errors" not in root_attrs(dom)
        front = next(p for p in plots(dom) if p["id"] == "search-front")
        assert int(front["data-drawn"]) == 3 == int(front["data-marks"])


def test_an_interrupted_search_resumes_without_losing_or_repeating_a_trial(tmp_path):
    passes = [
        # NOTE: 3 ratios, not 2: with 2, the last wave (both ratios' training cached) took seconds, and an interrupt
        # sent when the study showed one trial done and one running could land after the search had finished
        # (one calibration, not two: the six trials of 3 x 2 took 113 s of the suite; three prove the same)
        {"type": "prune_channels", "ratio": {"search": [0.25, 0.5, 0.75]}, "recover": {"epochs": 2}},
        {"type": "ptq_int8", "calibration": "minmax"},
    ]
    recipe = _recipe(tmp_path, passes)
    out = tmp_path / "s"
    cmd = [edgesmith_exe(), "search", str(recipe), "--workers", "1", "--out", str(out)]
    # NOTE: output to files, not pipes: nobody reads a pipe until the interrupt, and a search that fills one
    # (progress, a busy machine's retries, library warnings: 64 KB) blocks on its next write and never gets on
    log = tmp_path / "search.log"
    with open(log, "w") as fh:
        # NOTE: a pytest-xdist worker ignores SIGINT and a child inherits that: restore the default, or the
        # Ctrl-C below is dropped and the search runs to its end (seen in fresh clones: exit 1, every trial done)
        restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, preexec_fn=restore)
    tail = lambda: log.read_text(errors="replace")[-1500:]  # noqa: E731
    deadline = time.time() + 480  # ~30 s on a quiet machine; a busy one makes each race wait and retry
    states: dict[int, str] = {}
    while time.time() < deadline:  # wait until one trial is finished and the next is being built
        time.sleep(0.5)
        if proc.poll() is not None:  # the search ended (or died) before we could interrupt it: say how
            pytest.fail(f"the search exited ({proc.returncode}) before its second trial; states {states}: {tail()}")
        if (out / "study.db").is_file():
            try:
                states = _states(out)
            except Exception:  # noqa: BLE001 - the study is being created
                continue
            if 1 <= list(states.values()).count("COMPLETE") <= 2 and "RUNNING" in states.values():
                break
    else:
        proc.kill()
        pytest.fail(f"the search never reached its second trial; states {states}: {tail()}")
    os.kill(proc.pid, signal.SIGINT)
    proc.wait(timeout=120)
    err = log.read_text(errors="replace")
    assert proc.returncode == 130, err[-1500:]
    assert "run the same command again to resume" in err
    before = _states(out)
    done = {n for n, s in before.items() if s == "COMPLETE"}
    cut = {n for n, s in before.items() if s == "RUNNING"}
    assert done and cut
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode in (0, 1), r.stderr[-2000:]
    res = json.loads((out / "search.json").read_text())
    assert res["resumed_trials"] == len(cut)
    assert res["new_trials"] == 3 - len(done), "finished trials are not run again"
    after = _states(out)
    assert sorted(after) == [0, 1, 2] and set(after.values()) == {"COMPLETE"}, after
    params = [json.dumps(t["params"], sort_keys=True) for t in res["trials"]]
    assert len(set(params)) == 3, "every combination exactly once"


def test_budgets_no_trial_meets_report_the_closest_and_exit_1(cli, tmp_path):
    targets = [{"profile": "x86-avx512-vnni-ort", "batch_sizes": [1], "budgets": [{"metric": "artifact_mb", "goal": "max", "value": 0.0001}]}]
    r = cli("search", _recipe(tmp_path, [{"type": "ptq_int8", "calibration": {"search": ["minmax", "percentile"]}}], targets=targets), "--out", tmp_path / "s")
    assert r.code == 1, r.stderr[-1500:]
    assert "no trial met every budget" in r.stderr
    md = (tmp_path / "s" / "search.md").read_text()
    assert "**No trial met every budget.** Closest: #" in md and "artifact_mb" in md
    assert not (tmp_path / "s" / "best").exists()


def test_a_recipe_with_nothing_to_search_is_a_one_line_error(cli, tmp_path):
    r = cli("search", _recipe(tmp_path, [{"type": "ptq_int8"}]), "--out", tmp_path / "s")
    assert r.code == 2 and len(r.error_lines) == 1
    assert "nothing to search" in r.error_lines[0] and "hint:" in r.error_lines[0]


@pytest.mark.parametrize("address", ["127.0.0.1:1"])  # NOTE: loopback only: tests send no traffic to other addresses
def test_an_unreachable_ray_address_fails_fast_and_clearly(cli, tmp_path, address):
    t0 = time.time()
    r = cli("search", _recipe(tmp_path), "--ray", address, "--out", tmp_path / "s", timeout=60)
    assert r.code == 2 and len(r.error_lines) == 1, r.stderr[-1500:]
    line = r.error_lines[0]
    # nothing listens on port 1
    assert (f"cannot reach the Ray cluster at {address}" in line and "ray start --head" in line) or (
        f"{address} answers but is not a usable Ray cluster" in line
    ), line
    assert time.time() - t0 < 90
    assert not (tmp_path / "s").exists(), "nothing is written before the cluster answers"


def test_a_folder_holding_another_search_is_refused(cli, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / ".edgesmith-search").write_text("edgesmith-000000000000\n")
    r = cli("search", _recipe(tmp_path), "--out", out)
    assert r.code == 2 and "holds a search of another recipe" in r.error_lines[0]


def test_stop_when_met_and_a_study_in_another_database(cli, tmp_path):
    db = tmp_path / "elsewhere" / "studies.db"
    db.parent.mkdir()
    int8_only = [{"type": "ptq_int8", "calibration": {"search": ["minmax", "percentile"]}}]  # each ~1.5x FP32: the first meets the budgets
    r = cli("search", _recipe(tmp_path, int8_only), "--workers", "1", "--stop-when-met", "--storage", f"sqlite:///{db}", "--out", tmp_path / "s")
    assert r.code == 0, r.stderr[-1500:]
    res = json.loads((tmp_path / "s" / "search.json").read_text())
    assert len(res["trials"]) == 1 and res["trials"][0]["feasible"]  # the first trial met every budget: no second wave
    assert any("stopped early" in n for n in res["notes"])
    assert not (tmp_path / "s" / "study.db").exists()
    import optuna

    assert [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{db}")] == [(tmp_path / "s" / ".edgesmith-search").read_text().strip()]


def test_dry_run_checks_the_space_and_the_first_trial_and_writes_nothing(tmp_path):
    out = tmp_path / "s"
    r = subprocess.run([edgesmith_exe(), "search", str(_recipe(tmp_path)), "--dry-run", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "plan (dry run, nothing executed)" in r.stdout and "ptq_int8" in r.stdout and "sampler grid, 3 trial(s)" in r.stdout
    assert not out.exists()
    bad = _recipe(tmp_path, data={"calibration": {"source": str(tmp_path / "nowhere")}, "evaluation": {"source": "digits", "split": "test"}})
    r = subprocess.run([edgesmith_exe(), "search", str(bad), "--dry-run", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and "data not found" in r.stderr and not out.exists()


def test_a_bad_storage_url_leaves_no_folder_and_no_password_in_the_output(cli, tmp_path):
    secret = "s3cr3t-pw"
    r = cli("search", _recipe(tmp_path), "--storage", f"postgresql://alice:{secret}@127.0.0.1:1/studies", "--out", tmp_path / "s", timeout=120)
    assert r.code == 2 and len(r.error_lines) == 1, r.stderr[-1500:]
    assert "cannot open the study database postgresql://alice:***@127.0.0.1:1/studies" in r.error_lines[0]
    assert secret not in r.stdout + r.stderr
    assert not (tmp_path / "s").exists()  # nothing of a search that could not start stays behind


def test_a_shared_study_never_hands_one_process_the_trials_another_is_running():
    """Two searches on one study (--storage): a running trial whose process lives is not an orphan; one whose
    process died is; one of another host is left to it. Trials another process runs count against the budget."""
    import socket

    optuna = pytest.importorskip("optuna")
    from edgesmith.search.study import OWNER, orphans, others_running, owner

    study = optuna.create_study(directions=["maximize"])
    alive = subprocess.Popen(["sleep", "60"])
    try:
        mine = owner()
        live = {**mine, "pid": alive.pid, "start": open(f"/proc/{alive.pid}/stat").read().rsplit(")", 1)[1].split()[19]}
        dead = {**mine, "pid": 2**22 - 3, "start": "1"}
        elsewhere = {"host": socket.gethostname() + "-other", "pid": 1, "start": "1"}
        trials = [study.ask() for _ in range(4)]
        for t, who in zip(trials, [live, dead, elsewhere, None]):
            if who is not None:
                t.set_user_attr(OWNER, who)
        assert [t.number for t in orphans(study)] == [1, 3]  # the dead process's, and an ownerless one (an older edgesmith)
        assert sorted(t.number for t in others_running(study)) == [0, 2]
    finally:
        alive.kill()
