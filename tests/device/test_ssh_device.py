"""The whole path to a device over SSH against a real SSH server on 127.0.0.1 (tests/device/conftest.py):
add, probe, setup, bench, compare, validate, optimize with the device; and every fault the device
issue names, injected there: unreachable host, refused key, changed host key, connection dropped
mid-upload and mid-timing, full disk, missing runtime, another architecture, names with spaces and
quotes, two clients at once, Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import NO_SPEEDUP_BUDGET, edgesmith_exe
from tests.device.conftest import agents_running, leftovers
from tests.device.sshd import SSHD

pytestmark = pytest.mark.slow


def unique_copy(model: Path, dest: Path) -> Path:
    """The model with content no earlier upload had (uploads are cached by content)."""
    import onnx

    m = onnx.load(str(model))
    m.doc_string = f"unique {time.time_ns()} {os.getpid()}"
    onnx.save(m, str(dest))
    return dest


@pytest.fixture
def odd_model(digits_onnx, tmp_path) -> Path:
    """The digits CNN under a name a shell would split and unquote."""
    path = tmp_path / 'my model\'s "v2" $(touch pwned).onnx'
    shutil.copy(digits_onnx, path)
    return path


def test_add_pins_the_host_key_only_when_told(cli, sshd, client_key, device_py, device_work, config):
    url = f"ssh://tester@127.0.0.1:{sshd.port}"
    args = ["--key", client_key[0], "--python", device_py, "--workdir", device_work]
    r = cli("device", "add", "box", url, *args)
    assert r.code == 2 and "not pinned yet" in r.stderr and "SHA256:" in r.stderr and "--accept-host-key" in r.stderr
    assert not (config / "devices.yaml").exists()  # nothing saved from a refused first contact
    r = cli("device", "add", "box", url, *args, "--accept-host-key")
    assert r.code == 0, r.stderr
    assert "x86_64" in r.stdout and "cores" in r.stdout
    assert (config / "known_hosts").stat().st_mode & 0o077 == 0 and (config / "devices.yaml").stat().st_mode & 0o077 == 0
    shown = cli("device", "show", "box")
    assert shown.code == 0 and "SHA256:" in shown.stdout and "BEGIN" not in shown.stdout  # a fingerprint, never a key's secret
    assert "box" in cli("device", "list").stdout
    again = cli("device", "add", "box", url, *args)
    assert again.code == 2 and "exists" in again.stderr
    assert cli("device", "remove", "box").code == 0
    assert "no devices" in cli("device", "list").stdout and not (config / "known_hosts").read_text().strip()


@pytest.mark.parametrize(
    "url, message",
    [
        ("ssh://me:secret@host", "does not store passwords"),
        ("http://host", "is not an ssh://"),
        ("ssh://host", "names no user"),
        ("ssh://me@host/path", "has a path"),
    ],
)
def test_bad_addresses_are_refused_in_one_line(cli, config, url, message):
    r = cli("device", "add", "x", url)
    assert r.code == 2 and message in r.stderr and len(r.error_lines) == 1
    assert "secret" not in r.stderr  # a password in an address is never echoed


def test_a_key_that_cannot_log_in_is_named_before_any_connection(cli, config, tmp_path):
    """A missing file, a folder, a public key and a passphrase-protected key given as --key: named as such (the
    last two were asyncssh's KeyImportError, exit 3), before a host is contacted (port 1 is never reached)."""
    asyncssh = pytest.importorskip("asyncssh")
    key = asyncssh.generate_private_key("ssh-ed25519")
    pub = tmp_path / "id.pub"
    key.write_public_key(str(pub))
    locked = tmp_path / "locked"
    locked.write_bytes(key.export_private_key("pkcs8-pem", passphrase="pw", cipher_name="aes256-cbc", pbe_version=2))
    cases = {tmp_path / "none": "does not exist or is not a file", tmp_path: "is not a file", pub: "not a private key", locked: "protected by a passphrase"}
    for given, message in cases.items():
        r = cli("device", "add", "x", "ssh://me@127.0.0.1:1", "--key", given, "--accept-host-key")
        assert r.code == 2 and len(r.error_lines) == 1 and message in r.stderr and "cannot reach" not in r.stderr, r.stderr


def test_unreachable_host_and_refused_key(cli, loop, config, tmp_path, digits_onnx):
    from edgesmith.remote import client
    from edgesmith.remote.config import Registry

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # a port nobody listens on
    r = cli("device", "add", "gone", f"ssh://me@127.0.0.1:{port}", "--accept-host-key")
    assert r.code == 2 and "cannot reach device gone" in r.stderr
    other = tmp_path / "other_key"
    other.write_bytes(pytest.importorskip("asyncssh").generate_private_key("ssh-ed25519").export_private_key())
    other.chmod(0o600)
    dev = Registry().get("loop")
    dev.key = str(other)
    Registry().put(dev)
    with pytest.raises(Exception, match="refused the login"):
        client.bench("loop", digits_onnx, {"iterations": 5})


def test_a_changed_host_key_is_refused_with_how_to_accept(cli, device_py, client_key, config, tmp_path, digits_onnx):
    server = SSHD(device_py.parent, client_key[1]).start()
    try:
        url = f"ssh://tester@127.0.0.1:{server.port}"
        args = ["--key", client_key[0], "--python", device_py, "--workdir", str(tmp_path / "w")]
        assert cli("device", "add", "moved", url, *args, "--accept-host-key").code == 0
        server.swap_host_key()  # the device was reinstalled, or someone is in the middle
        ran = len(server.commands)
        r = cli("bench", digits_onnx, "--on", "moved", "--iterations", "5")
        assert r.code == 2 and "CHANGED" in r.stderr and "--accept-host-key --replace" in r.stderr
        assert len(server.commands) == ran  # nothing was sent to, or run on, the impostor
    finally:
        server.stop()


def test_bench_on_the_device_and_uploads_cached_by_content(cli, loop, odd_model, tmp_path):
    r = cli("bench", odd_model, "--on", "loop", "--iterations", "30", "--batch", "1", "--batch", "4", "--json")
    assert r.code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["batch"] for row in rows] == [1, 4] and all(row["p50_ms"] > 0 and row["device"] == "loop" for row in rows)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()  # the name was data, never shell
    again = cli("bench", odd_model, "--on", "loop", "--iterations", "10")
    assert again.code == 0, again.stderr
    assert "sent 0 file(s), 0.00 MB" in again.stderr and "on device loop" in again.stdout  # the unchanged artifact is not sent again
    assert leftovers(loop.work) == []


def test_compare_on_the_device(cli, loop, odd_model, digits_onnx):
    r = cli("compare", digits_onnx, odd_model, "--on", "loop", "--rounds", "4", "--per-round", "5", "--json")
    assert r.code == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["device"] == "loop" and 0.5 < res["ratio"] < 2.0  # one model twice: no real difference


def test_probe_writes_a_profile_and_setup_installs_what_the_device_lacks(loop):
    from edgesmith.profiles import load_profile
    from edgesmith.remote import client

    done = client.setup("loop")  # the device env lacks onnxruntime-extensions: fetched here, unpacked there
    assert done["versions"]["onnxruntime_extensions"] and done["versions"]["onnxruntime"]
    assert client.setup("loop")["installed"] == []  # nothing left to install
    _, facts, path = client.probe("loop", benchmark=False)
    assert facts["arch"] == "x86_64" and facts["cores"] >= 1 and "torch" not in facts["versions"]
    profile = load_profile(str(path))
    assert profile.hardware.arch == "x86_64" and profile.backend == "onnxruntime"


def test_a_profile_of_another_architecture_is_refused(cli, loop, digits_onnx):
    ran = len(loop.server.commands)
    r = cli("bench", digits_onnx, "--on", "loop", "-t", "arm-cortex-a72-ort")
    assert r.code == 2 and "is x86_64, but profile arm-cortex-a72-ort is for aarch64" in r.stderr
    assert len(loop.server.commands) == ran  # refused before anything ran there
    r = cli("optimize", "edgesmith.zoo:digits_prelu_heads", "-t", "arm-cortex-a72-ort", "--device", "loop", "--out", "opt")
    assert r.code == 2 and "is x86_64, but profile arm-cortex-a72-ort is for aarch64" in r.stderr
    assert len(loop.server.commands) == ran


def test_a_missing_runtime_says_device_setup(cli, loop, digits_onnx, tmp_path):
    ov = pytest.importorskip("openvino")
    xml = tmp_path / "model.xml"
    ov.save_model(ov.convert_model(str(digits_onnx)), str(xml))
    r = cli("bench", xml, "--on", "loop", "--iterations", "5")
    assert r.code == 2 and "device setup loop --runtime openvino" in r.stderr, r.stderr


def test_a_dropped_upload_is_retried_and_nothing_half_written_is_used(loop, digits_onnx, tmp_path):
    from edgesmith.remote import client

    big = unique_copy(digits_onnx, tmp_path / "with spaces.onnx")  # new content: it must really be sent
    loop.server.faults["drop_upload_after"] = 20_000
    rows, transfer = client.bench("loop", big, {"iterations": 5})
    assert rows[0]["p50_ms"] > 0 and transfer["sent_files"] >= 1
    assert leftovers(loop.work) == []


def test_a_connection_dropped_while_timing_is_retried_then_a_clear_error(cli, loop, digits_onnx):
    loop.server.faults["drop_exec_after"] = 1.0
    r = cli("bench", digits_onnx, "--on", "loop", "--duration", "3")
    assert r.code == 0 and "the connection dropped" in r.stderr and "trying again (2/3)" in r.stderr, r.stderr

    # dropped on every try: three attempts, then one clear line; nothing recorded
    loop.server.faults["drop_exec_every"] = 1.0
    try:
        r = cli("bench", digits_onnx, "--on", "loop", "--duration", "3")
    finally:
        loop.server.faults.pop("drop_exec_every", None)
    assert r.code == 2 and "dropped 3 times" in r.stderr and "no result was written" in r.stderr, r.stderr
    deadline = time.time() + 20
    while agents_running(loop.work) and time.time() < deadline:
        time.sleep(0.2)
    assert agents_running(loop.work) == [] and leftovers(loop.work) == []


def test_a_full_disk_is_one_clear_error_and_leaves_no_partial_file(cli, loop, tmp_path, digits_onnx):
    fresh = unique_copy(digits_onnx, tmp_path / "fresh.onnx")
    loop.server.faults["disk_full"] = True
    r = cli("bench", fresh, "--on", "loop", "--iterations", "5")
    assert r.code == 2 and "ran out of disk space" in r.stderr and "--workdir" in r.stderr, r.stderr
    assert leftovers(loop.work) == []


def test_two_clients_take_turns_on_one_device(loop, digits_onnx):
    from edgesmith.remote import client

    held: list[dict] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            _, transfer = client.bench("loop", digits_onnx, {"duration_s": 1.5, "warmup": 2})
            held.append(transfer["lock"])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(held) == 2
    first, second = sorted(held, key=lambda h: h["acquired"])
    assert second["acquired"] >= first["released"]  # one timing job at a time: the windows never overlap


def test_ctrl_c_ends_the_remote_run_and_removes_its_files(loop, digits_onnx, config):
    env = {**os.environ, "EDGESMITH_CONFIG_DIR": str(config)}
    # NOTE: a pytest-xdist worker may ignore SIGINT and a child inherits that: restore the default, or the Ctrl-C is dropped
    restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    cmd = [edgesmith_exe(), "bench", str(digits_onnx), "--on", "loop", "--duration", "60"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=restore)
    deadline = time.time() + 60
    while time.time() < deadline and not list((Path(loop.work) / "jobs").glob("*")):
        time.sleep(0.1)
    assert list((Path(loop.work) / "jobs").glob("*")), "the remote run never started"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=45)  # the bench asked for 60 s: an ignored Ctrl-C would end with exit 0
    assert proc.returncode == 130 and "interrupted" in err
    deadline = time.time() + 20
    while (agents_running(loop.work) or leftovers(loop.work)) and time.time() < deadline:
        time.sleep(0.2)
    assert agents_running(loop.work) == [] and leftovers(loop.work) == []


def test_validate_a_run_on_the_device_records_it_in_the_manifest(cli, loop, device_run, tmp_path):
    run = tmp_path / "a run with spaces"
    shutil.copytree(device_run, run)
    r = cli("validate", run, "--on", "loop", "--json")
    assert r.code == 0, r.stderr
    res = json.loads(r.stdout)
    built = json.loads((device_run / "manifest.json").read_text())["targets"]["x86-avx512-vnni-ort"]
    here = res["targets"]["x86-avx512-vnni-ort"]
    assert res["device"]["name"] == "loop"
    assert here["metrics"]["top1"] == pytest.approx(built["metrics"]["top1"])  # same artifact, same runtime
    assert here["metrics"]["speedup_vs_fp32@1"] > 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["devices"]["loop"]["targets"]["x86-avx512-vnni-ort"]["metrics"]["top1"] == here["metrics"]["top1"]
    assert "On device loop" in (run / "devices" / "loop.md").read_text()
    assert cli("check", run, "--baseline", run).code in (0, 2)  # the recorded run stays a readable run


def test_optimize_times_its_candidates_on_the_device(loop, tmp_path, steady_profile):
    from edgesmith.compress.quantize.policy import Plan
    from edgesmith.optimize import optimize
    from edgesmith.recipe import parse_recipe

    recipe = parse_recipe(
        {
            "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
            "data": {"calibration": {"source": "digits", "samples": 128}, "evaluation": {"source": "digits", "split": "test", "samples": 128}},
            "targets": [{"profile": str(steady_profile), "batch_sizes": [1], "budgets": [{"metric": "top1", "goal": "max-degradation", "value": 5.0}]}],
            "output_dir": str(tmp_path / "opt"),
        }
    )
    # two candidates (the CLI's policy would try six: the subject here is where they are timed)
    res = optimize(
        recipe, tmp_path, other_runtimes=False, plans=[Plan("float", "onnxruntime", None), Plan("int8", "onnxruntime", "ptq_int8", {})], device="loop"
    )
    timed = [t for t in res.trials if t.timing_node]
    assert timed and all(t.timing_node == "device:loop" for t in timed)
    assert "timed on device loop over SSH" in (res.out_dir / "optimize.md").read_text()
    manifest = json.loads((res.out_dir / "manifest.json").read_text())
    assert manifest["devices"]["loop"]["verdict"] in ("pass", "inconclusive") and res.verdict == manifest["devices"]["loop"]["verdict"]


def test_a_recipe_target_on_the_device_then_the_gate_judges_what_the_device_measured(cli, loop, tmp_path):
    import yaml

    out = tmp_path / "run"
    recipe = {
        "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
        "data": {"calibration": {"source": "digits", "samples": 128}, "evaluation": {"source": "digits", "split": "test"}},
        "passes": [{"type": "ptq_int8"}],
        "targets": [{"profile": "x86-avx512-vnni-ort", "batch_sizes": [1], "budgets": NO_SPEEDUP_BUDGET, "device": "loop"}],
        "bench": {"warmup": 2, "iterations": 20},
        "output_dir": str(out),
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    r = cli("run", tmp_path / "recipe.yaml")
    assert r.code == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["devices"]["loop"]["targets"]["x86-avx512-vnni-ort"]["verdict"] in ("pass", "inconclusive")
    assert cli("baseline", "save", out, "--to", tmp_path / "b.json", "--device", "loop").code == 0
    base = json.loads((tmp_path / "b.json").read_text())
    assert base["measured_on"] == "loop" and base["targets"]["x86-avx512-vnni-ort"]["bar"]["measured_on"] == "loop"
    gate = tmp_path / "gate"
    r = cli("check", out, "-b", tmp_path / "b.json", "--device", "loop", "--rounds", "4", "--per-round", "5", "--out", gate)
    assert r.code == 0, r.stdout + r.stderr
    summary = (gate / "summary.md").read_text()
    assert "on device loop" in summary  # latency re-timed there, baseline against candidate
    # the same baseline judged against this machine's measures: the bar changed, and says how
    r = cli("check", out, "-b", tmp_path / "b.json", "--no-remeasure", "--out", tmp_path / "gate2")
    assert r.code == 1 and "measured on: loop -> the build machine" in (tmp_path / "gate2" / "summary.md").read_text()


def test_the_python_api_takes_the_device_too(loop, digits_onnx):
    import edgesmith

    res = edgesmith.bench(digits_onnx, iterations=10, on="loop")
    assert res.rows[0]["device"] == "loop" and res.rows[0]["p50_ms"] > 0
    cmp_ = edgesmith.compare(digits_onnx, digits_onnx, rounds=3, per_round=3, on="loop")
    assert cmp_["device"] == "loop" and cmp_["ratio"] > 0
    with pytest.raises(edgesmith.errors.ConfigError, match="validates a run folder"):
        edgesmith.validate(digits_onnx, data="digits", on="loop")


def test_search_times_its_trials_on_the_device(cli, loop, tmp_path):
    import yaml

    recipe = {
        "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
        "inputs": [{"name": "input", "shape": ["batch", 1, 8, 8]}],
        "data": {"calibration": {"source": "digits", "samples": 128}, "evaluation": {"source": "digits", "split": "test"}},
        "passes": [{"type": "ptq_int8", "enabled": {"search": [True, False]}}],
        "targets": [{"profile": "x86-avx512-vnni-ort", "batch_sizes": [1], "budgets": NO_SPEEDUP_BUDGET}],
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    r = cli("search", tmp_path / "recipe.yaml", "--device", "loop", "--out", tmp_path / "s")
    assert r.code in (0, 1), r.stderr[-2000:]
    res = json.loads((tmp_path / "s" / "search.json").read_text())
    assert len(res["trials"]) == 2 and {t["timing_node"] for t in res["trials"]} == {"device:loop"}, res["trials"]
