"""A loopback device: a real SSH server (asyncssh, tests/device/sshd.py) on 127.0.0.1 with a temporary
host key and client key, whose commands run with a Python environment that has only the device-side
install (no torch; tests/device_env.py, built once and cached between runs). The device's work folder
has a space and quotes in its name. Each test gets its own edgesmith config folder (devices.yaml, pinned
keys); ``loop`` is a device added there with its host key pinned."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

asyncssh = pytest.importorskip("asyncssh")

from tests.device.sshd import SSHD  # noqa: E402
from tests.device_env import device_python  # noqa: E402


@dataclass
class Loop:
    server: SSHD
    key: Path
    python: Path
    work: str
    url: str

    def add_args(self) -> list[str]:
        return ["--key", str(self.key), "--python", str(self.python), "--workdir", self.work]


@pytest.fixture(scope="session")
def device_py() -> Path:
    return device_python()


@pytest.fixture(scope="session")
def client_key(tmp_path_factory) -> tuple[Path, str]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    path = tmp_path_factory.mktemp("keys") / "id_ed25519"
    path.write_bytes(key.export_private_key())
    path.chmod(0o600)
    return path, key.export_public_key().decode()


@pytest.fixture(scope="session")
def device_work(tmp_path_factory) -> str:
    # NOTE: shared by the session's tests, so edgesmith's package is uploaded once per worker
    return str(tmp_path_factory.mktemp("device") / 'dev ice\'s "work"')


@pytest.fixture(scope="session")
def sshd(device_py, client_key):
    server = SSHD(device_py.parent, client_key[1]).start()
    yield server
    server.stop()


@pytest.fixture
def config(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "config"
    monkeypatch.setenv("EDGESMITH_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def loop(sshd, client_key, device_py, device_work, config) -> Loop:
    from edgesmith.remote import client

    sshd.faults.clear()
    url = f"ssh://tester@127.0.0.1:{sshd.port}"
    client.add("loop", url, key=client_key[0], python=str(device_py), workdir=device_work, accept_host_key=True)
    return Loop(sshd, client_key[0], device_py, device_work, url)


def leftovers(work: str) -> list[str]:
    """Partial uploads and job folders left on the device."""
    root = Path(work)
    return [p.name for p in (root / "blobs").glob(".tmp-*")] + [p.name for p in (root / "jobs").glob("*")] if root.exists() else []


def agents_running(work: str) -> list[int]:
    """Processes still running for this work folder: agents (their command line names it) and their
    benchmark children (their PYTHONPATH does)."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                seen = (p / "cmdline").read_bytes() + (p / "environ").read_bytes()
                state = (p / "stat").read_text().split(") ")[-1][:1]
            except OSError:
                continue
            if work.encode() in seen and state != "Z":
                pids.append(int(p.name))
    return pids
