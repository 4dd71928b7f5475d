"""edgesmith search on a real local Ray cluster, started and torn down by the test: a head and a second
node on loopback, the second labelled with the target's hardware. Trials must land on both nodes,
timing on the labelled one, and every trial's accuracy and size must equal the local run's."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import edgesmith_exe

pytestmark = pytest.mark.slow

RECIPE = {
    "name": "ray-test",
    "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
    "inputs": [{"name": "input", "shape": ["batch", 1, 8, 8]}],
    "data": {"calibration": {"source": "digits", "split": "train", "samples": 128}, "evaluation": {"source": "digits", "split": "test"}},
    "passes": [{"type": "ptq_int8", "enabled": {"search": [True, False]}, "calibration": "minmax"}],
    "targets": [{"profile": "x86-avx512-vnni-ort", "batch_sizes": [1]}],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_node(tmp_path):
    """A head and a second node labelled with the target's hardware: (address, the labelled node's raylet pid)."""
    pytest.importorskip("ray")
    import sys

    ray_exe = str(Path(sys.executable).with_name("ray"))
    if not Path(ray_exe).exists():
        ray_exe = shutil.which("ray")
    from edgesmith.profiles import load_profile
    from edgesmith.search.executors import LABEL, hardware_tag

    tag = hardware_tag(load_profile("x86-avx512-vnni-ort"))
    port = _free_port()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    try:
        subprocess.run([ray_exe, "start", "--head", "--port", str(port), "--include-dashboard", "false", *common], check=True, capture_output=True, timeout=120)
        head = _raylets(port)
        subprocess.run(
            [ray_exe, "start", "--address", f"127.0.0.1:{port}", "--labels", f"{LABEL}={tag}", *common], check=True, capture_output=True, timeout=120
        )
        (labelled,) = _raylets(port) - head
        yield f"127.0.0.1:{port}", labelled
    finally:
        _stop_cluster(port)  # NOTE: not `ray stop`: it kills every Ray process here, another test's cluster too


def _cluster(port: int) -> list:
    """This cluster's processes: those started with its GCS port, and their children (agents, workers)."""
    import re

    import psutil

    mine = re.compile(rf"(:|=){port}\b")
    found: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline"]):
        if mine.search(" ".join(p.info["cmdline"] or [])) and p.pid != os.getpid():
            found[p.pid] = p
            try:
                found.update({c.pid: c for c in p.children(recursive=True)})
            except psutil.Error:
                pass
    return list(found.values())


def _stop_cluster(port: int) -> None:
    import psutil

    procs = _cluster(port)
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=30)


@pytest.fixture
def ray_cluster(ray_node):
    return ray_node[0]


def _raylets(port: int) -> set[int]:
    import psutil

    found = set()
    for p in _cluster(port):
        try:
            if p.name() == "raylet":
                found.add(p.pid)
        except psutil.Error:
            pass
    return found


def test_search_on_a_local_ray_cluster_spreads_trials_and_equals_the_local_run(ray_cluster, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE, sort_keys=False))
    r = subprocess.run(
        [edgesmith_exe(), "search", str(recipe), "--ray", ray_cluster, "--out", str(tmp_path / "ray")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2500:]
    on_ray = json.loads((tmp_path / "ray" / "search.json").read_text())
    assert on_ray["executor"].startswith("Ray cluster, 2 node(s)") and "timing on the node labelled" in on_ray["executor"]
    nodes = {t["node"] for t in on_ray["trials"]}
    assert len(nodes) >= 2, f"trials ran on {nodes}"
    import ray

    ray.init(address=ray_cluster, log_to_driver=False)
    try:
        labelled = [n["NodeID"] for n in ray.nodes() if (n.get("Labels") or {}).get("edgesmith.hardware")]
    finally:
        ray.shutdown()
    assert {t["timing_node"] for t in on_ray["trials"]} == set(labelled)
    # trial folders came back through the object store
    assert all((tmp_path / "ray" / "trials" / f"{t['number']:04d}" / "manifest.json").is_file() for t in on_ray["trials"])
    local = subprocess.run(
        [edgesmith_exe(), "search", str(recipe), "--out", str(tmp_path / "local")], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert local.returncode == 0, local.stderr[-2500:]
    here = json.loads((tmp_path / "local" / "search.json").read_text())
    key = lambda res: {json.dumps(t["params"], sort_keys=True): (t["accuracy"], round(t["size_mb"], 6)) for t in res["trials"]}  # noqa: E731
    assert key(on_ray) == key(here)


def _building_on(raylet: int) -> bool:
    """A trial build is running in a worker of that node (Ray titles a worker by the task it runs)."""
    import psutil

    try:
        return any("build_remote" in " ".join(c.cmdline()) for c in psutil.Process(raylet).children(recursive=True))
    except psutil.Error:
        return False


def test_a_node_killed_mid_search_is_survived_its_trials_retried_and_the_timing_moved(ray_node, tmp_path):
    """Two nodes; the labelled one (where trials build and latency is timed) is killed while a trial builds
    there. The trial is retried on the other node, the timing that had nowhere to go is done on this machine and
    said so, and the search finishes with every trial measured."""
    import signal
    import time

    from edgesmith.profiles import load_profile
    from edgesmith.search.executors import LABEL, hardware_tag

    tag = hardware_tag(load_profile("x86-avx512-vnni-ort"))
    address, labelled = ray_node
    recipe = tmp_path / "recipe.yaml"
    spec = {**RECIPE, "passes": [{"type": "ptq_int8", "calibration": "minmax", "per_channel": {"search": [True, False]}}]}
    recipe.write_text(yaml.safe_dump(spec, sort_keys=False))
    search = None
    try:
        search = subprocess.Popen(
            [edgesmith_exe(), "search", str(recipe), "--ray", address, "--out", str(tmp_path / "out")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        deadline = time.time() + 300
        while not _building_on(labelled) and search.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert search.poll() is None, f"the search ended before a trial built on the labelled node: {search.communicate()[1][-2000:]}"
        os.kill(labelled, signal.SIGKILL)  # the node's raylet: its workers and the trial they build die with it
        out, err = search.communicate(timeout=600)
    finally:
        if search is not None and search.poll() is None:
            search.kill()
    assert search.returncode == 0, err[-2500:]
    result = json.loads((tmp_path / "out" / "search.json").read_text())
    assert len(result["trials"]) == 2 and all(t.get("accuracy") is not None for t in result["trials"]), result["trials"]
    assert len({t["node"] for t in result["trials"]}) == 1  # both built, in the end, on the one node left
    assert any(f"labelled {LABEL}={tag}" in n and "timed on the machine running the search" in n for n in result["notes"]), result["notes"]
