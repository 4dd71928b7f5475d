"""The devices a user has added: ``devices.yaml`` and the pinned host keys (``known_hosts``, OpenSSH's
format) in edgesmith's config folder (``$EDGESMITH_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/edgesmith``, else
``~/.config/edgesmith``). The folder is the user's alone (0700), its files 0600, every write atomic.
Nothing secret is stored: keys stay where the user keeps them (a path, or the SSH agent)."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from edgesmith.errors import ConfigError
from edgesmith.schema import DEVICE_NAME, load_yaml

NAME = re.compile(DEVICE_NAME)
DEFAULT_WORKDIR = ".cache/edgesmith-device"  # relative: under the login's home on the device


@dataclass
class Device:
    name: str
    host: str
    user: str
    port: int = 22
    key: str | None = None  # a private key file; None: the SSH agent and the default keys in ~/.ssh
    python: str = "python3"  # the device's interpreter (`device setup` may replace it with its own environment's)
    workdir: str = DEFAULT_WORKDIR  # as given; ``work`` is where it resolved on the device
    work: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # `device probe`: arch, cores, memory, OS, runtimes
    profile: str | None = None  # the profile `device probe` wrote
    setup: dict[str, Any] = field(default_factory=dict)  # `device setup`: what it installed, where

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@{_host_for_url(self.host)}" + (f":{self.port}" if self.port != 22 else "")

    @property
    def arch(self) -> str | None:
        return self.facts.get("arch")


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def config_dir() -> Path:
    base = os.environ.get("EDGESMITH_CONFIG_DIR") or os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "edgesmith")
    return Path(base)


def known_hosts_file() -> Path:
    return config_dir() / "known_hosts"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{name!r} is not a device name", hint="use letters, digits, '.', '_' and '-' (at most 64), starting with a letter or digit")
    return name


def parse_url(url: str) -> tuple[str, str, int]:
    """``ssh://user@host[:port]`` -> (user, host, port). A password in the URL is refused, never stored."""

    parts = urlsplit(url.strip())
    if parts.scheme != "ssh" or not parts.hostname:
        raise ConfigError(f"{url!r} is not an ssh://user@host[:port] address", hint="e.g. ssh://pi@192.168.1.20 or ssh://me@box.local:2222")
    if parts.password is not None:
        raise ConfigError("the address carries a password; edgesmith does not store passwords", hint="log in with a key: --key PATH, or the SSH agent")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{url!r} has a path or query; a device address is only ssh://user@host[:port]", hint="give the work folder with --workdir")
    try:
        port = parts.port or 22
    except ValueError:
        raise ConfigError(f"{url!r} has an invalid port", hint="a port is 1-65535") from None
    if not parts.username:
        raise ConfigError(f"{url!r} names no user", hint="ssh://USER@host")
    return unquote(parts.username), parts.hostname, port


class Registry:
    """devices.yaml: read, change, write back (atomically)."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder or config_dir()
        self.path = self.folder / "devices.yaml"

    def load(self) -> dict[str, Device]:
        if not self.path.exists():
            return {}
        data = load_yaml(self.path, "device list") or {}
        devices = data.get("devices") if isinstance(data, dict) else None
        if not isinstance(devices, dict):
            raise ConfigError(f"{self.path} is not an edgesmith device list", hint=f"remove or fix {self.path}")
        out: dict[str, Device] = {}
        for name, d in devices.items():
            try:
                out[check_name(str(name))] = Device(name=str(name), **{k: v for k, v in d.items() if k != "name"})
            except (TypeError, AttributeError) as exc:
                raise ConfigError(f"{self.path}: device {name!r} is malformed ({exc})", hint=f"remove it: edgesmith device remove {name}") from None
        return out

    def get(self, name: str) -> Device:
        devices = self.load()
        if name not in devices:
            known = ", ".join(sorted(devices)) or "none yet"
            raise ConfigError(f"no device named {name!r} (devices: {known})", hint="add it: edgesmith device add NAME ssh://user@host")
        return devices[name]

    def save(self, devices: dict[str, Device]) -> None:
        text = yaml.safe_dump({"devices": {n: {k: v for k, v in asdict(d).items() if k != "name"} for n, d in sorted(devices.items())}}, sort_keys=False)
        write_private(self.path, text)

    def put(self, device: Device) -> None:
        devices = self.load()
        devices[device.name] = device
        self.save(devices)

    def remove(self, name: str) -> Device:
        devices = self.load()
        device = devices.pop(self.get(name).name)
        self.save(devices)
        return device


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically, readable by the user alone, in a folder only the user can enter."""

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def host_pattern(host: str, port: int) -> str:
    """How OpenSSH's known_hosts names a host (``[host]:port`` off port 22)."""
    return host if port == 22 else f"[{host}]:{port}"


def pinned_keys(host: str, port: int) -> list[str]:
    """The public keys pinned for ``host:port`` (OpenSSH lines ``TYPE BASE64``)."""

    path = known_hosts_file()
    if not path.exists():
        return []
    pattern = host_pattern(host, port)
    keys = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and pattern in fields[0].split(","):
            keys.append(f"{fields[1]} {fields[2]}")
    return keys


def pin_key(host: str, port: int, public_key: str) -> None:
    """Pin ``public_key`` (``TYPE BASE64``) for ``host:port``, replacing whatever was pinned before."""

    path = known_hosts_file()
    lines = _other_hosts(path, host, port)
    lines.append(f"{host_pattern(host, port)} {' '.join(public_key.split()[:2])}")
    write_private(path, "\n".join(lines) + "\n")


def _other_hosts(path: Path, host: str, port: int) -> list[str]:
    pattern = host_pattern(host, port)
    return [ln for ln in (path.read_text().splitlines() if path.exists() else []) if not (ln.split() and pattern in ln.split()[0].split(","))]


def unpin_key(host: str, port: int) -> None:
    path = known_hosts_file()
    if not path.exists():
        return
    lines = _other_hosts(path, host, port)
    write_private(path, "\n".join(lines) + ("\n" if lines else ""))
