"""The local pool's builds: forks of a zygote that imported the build stack once; a build that dies is a
failed trial with its last words, and an interrupted search stops its builds."""

from __future__ import annotations

import os
import time

import pytest

from edgesmith.search.executors import LocalPool


def _job(tmp_path, source: str, n: int) -> dict:
    recipe = {
        "model": {"source": source},
        "inputs": [{"name": "input", "shape": ["batch", 1, 8, 8]}],
        "targets": [{"profile": "x86-avx512-vnni-ort", "batch_sizes": [1]}],
    }
    return {"recipe": recipe, "base_dir": str(tmp_path), "trial_dir": str(tmp_path / f"t{n}"), "cache": None}


@pytest.fixture
def pool():
    p = LocalPool(2)
    yield p
    p.close(cancel=True)


def test_a_dying_build_is_a_failed_trial_and_a_failing_one_says_why(tmp_path, pool):
    (tmp_path / "boom.py").write_text("import os, sys\ndef build():\n    print('last words', file=sys.stderr, flush=True)\n    os._exit(7)\n")
    res = pool.build_wave([_job(tmp_path, "boom:build", 0), _job(tmp_path, "nosuchmodule:build", 1)])
    assert not res[0]["ok"] and "the build process died" in res[0]["error"] and "last words" in res[0]["error"], res[0]
    assert not res[1]["ok"] and "nosuchmodule" in res[1]["error"], res[1]
    assert res[1]["pid"] != os.getpid()
    assert pool._zygote is not None and not pool.notes, pool.notes  # built by forks of the zygote, not a fallback
    again = pool.build_wave([_job(tmp_path, "nosuchmodule:build", 2)])  # one zygote serves every wave
    assert again[0]["pid"] not in (res[1]["pid"], os.getpid())


def test_an_interrupted_search_stops_its_builds(tmp_path, pool):
    (tmp_path / "slow.py").write_text("import time\ndef build():\n    time.sleep(120)\n")
    for n in range(2):
        job = tmp_path / f"job{n}.json"
        job.write_text(__import__("json").dumps(dict(_job(tmp_path, "slow:build", n), cores=pool.slots[n])))
        pool._running.append(pool._start(job, tmp_path / f"r{n}.json", tmp_path / f"log{n}.txt"))
    builds = list(pool._running)
    assert all(b.alive() for b in builds)
    pool.close(cancel=True)
    deadline = time.time() + 20
    while any(b.alive() for b in builds) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(b.alive() for b in builds), "the builds outlived the search"
    assert pool._zygote is None
