"""One SSH session with a device (asyncssh): connect with the pinned host key, make sure edgesmith's
package is there, upload files by content hash, and ask the device agent (``edgesmith.device.agent``).

Why asyncssh: one library gives the client, SFTP and a server (the tests run a real SSH server in-process
on 127.0.0.1); commands are argument lists quoted with ``shlex.join`` and requests travel as JSON on stdin,
so nothing a user names (paths with spaces or quotes) is ever pasted into a shell line; asyncio's
cancellation closes the channel on Ctrl-C, which ends the remote process (its stdin closes).

``run(device, job)`` gives ``job`` a connected ``Session`` and retries a dropped connection up to
``ATTEMPTS`` times: uploads are content-addressed and requests have no effect but their answer, so a
retry repeats nothing that was done and nothing half-written is ever used.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shlex
import socket
import tempfile
import time
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from edgesmith.errors import EXIT_INTERNAL, DeviceError, RemoteFailure
from edgesmith.outputs import sha256
from edgesmith.progress import Reporter
from edgesmith.remote import scripts
from edgesmith.remote.config import Device, host_pattern, pinned_keys

T = TypeVar("T")
ATTEMPTS = 3
RETRY_WAIT_S = 1.0
CONNECT_TIMEOUT_S = 15.0
FREE_MARGIN_BYTES = 32 * 2**20  # what an upload leaves free on the device, at least
SETUP_HINT = "edgesmith device setup {name}"


class Dropped(Exception):
    """The connection went away mid-request (retried)."""


def _asyncssh() -> Any:
    try:
        import asyncssh
    except ImportError:
        raise DeviceError("devices over SSH need asyncssh, which is not installed", hint="pip install 'edgesmith[device]'") from None
    return asyncssh


def transient(exc: BaseException) -> bool:
    ssh = _asyncssh()
    if isinstance(exc, ssh.PermissionDenied | ssh.HostKeyNotVerifiable):
        return False
    return isinstance(exc, Dropped | ssh.ConnectionLost | ssh.DisconnectError | ConnectionResetError | BrokenPipeError | asyncio.IncompleteReadError)


def run(device: Device, job: Callable[[Session], Awaitable[T]], reporter: Any = None) -> T:
    """``job`` on a fresh connection; a dropped connection is retried (``ATTEMPTS`` in all), then a clear error."""

    rep = reporter or Reporter()
    partials: list[str] = []  # uploads a dropped attempt left half-written: the next attempt removes them
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return asyncio.run(_once(device, job, rep, partials))
        except Exception as exc:
            if not transient(exc):
                raise
            reason = str(exc) or type(exc).__name__
            if attempt == ATTEMPTS:
                raise DeviceError(
                    f"the connection to device {device.name} dropped {ATTEMPTS} times (last: {reason}); no result was written",
                    hint=f"check the network and the device (`edgesmith device probe {device.name}`), then run again",
                ) from None
            rep.info(f"[{device.name}] the connection dropped ({reason}): trying again ({attempt + 1}/{ATTEMPTS})")
            time.sleep(RETRY_WAIT_S * attempt)
    raise AssertionError("unreachable")


async def _once(device: Device, job: Callable[[Session], Awaitable[T]], rep: Any, partials: list[str]) -> T:
    conn = await connect(device)
    try:
        return await job(Session(conn, device, rep, partials))
    except Exception:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # NOTE: Ctrl-C cancels this task (asyncio.run); a library that turned the cancellation into its own error
            # (a closed channel) would be taken for a dropped connection and retried: it stays a cancellation, and
            # asyncio.run makes it the KeyboardInterrupt it was
            raise asyncio.CancelledError from None
        raise
    finally:
        conn.close()
        try:
            await asyncio.wait_for(conn.wait_closed(), 5.0)
        except (TimeoutError, OSError):
            pass


def check_key(device: Device) -> Path:
    """The device's private key file, readable as one: a missing file, a folder, a file that is not a private key
    or one that needs a passphrase is named before any connection (asyncssh raised KeyImportError, exit 3)."""
    ssh = _asyncssh()
    key = Path(device.key or "").expanduser()
    fix = f"edgesmith device add {device.name} {device.url} --key PATH --replace"
    if not key.is_file():
        raise DeviceError(f"the key {key} of device {device.name} does not exist or is not a file", hint=fix)
    try:
        ssh.read_private_key(str(key))
    except (ssh.KeyImportError, ssh.KeyEncryptionError, OSError, ValueError) as exc:
        if "passphrase" in str(exc).lower():
            raise DeviceError(
                f"the key {key} is protected by a passphrase", hint="load it into the SSH agent (ssh-add KEY) and add the device without --key"
            ) from None
        raise DeviceError(f"{key} is not a private key asyncssh can read ({exc})", hint=f"give the private key, not the .pub: {fix}") from None
    return key


async def connect(device: Device, trust_key: str | None = None) -> Any:
    """Log in to ``device``, checking its host key against the pinned one (or ``trust_key``, ``TYPE BASE64``)."""

    ssh = _asyncssh()
    keys = [trust_key] if trust_key else pinned_keys(device.host, device.port)
    known = ssh.import_known_hosts("".join(f"{host_pattern(device.host, device.port)} {k}\n" for k in keys))
    options: dict[str, Any] = {"known_hosts": known, "connect_timeout": CONNECT_TIMEOUT_S, "keepalive_interval": 15, "keepalive_count_max": 4}
    if device.key:
        options.update(client_keys=[str(check_key(device))], agent_path=None)
    try:
        return await ssh.connect(device.host, device.port, username=device.user, config=None, **options)
    except ssh.HostKeyNotVerifiable:
        if keys:
            raise DeviceError(
                f"the host key of device {device.name} ({device.host}:{device.port}) has CHANGED since it was pinned: refusing to connect",
                hint="if the device was reinstalled, check its new key (ssh-keyscan, or its console) and pin it: "
                f"edgesmith device add {device.name} {device.url} --accept-host-key --replace",
            ) from None
        raise DeviceError(
            f"the host key of device {device.name} ({device.host}:{device.port}) is not pinned",
            hint=f"check it and pin it on first use: edgesmith device add {device.name} {device.url} --accept-host-key --replace",
        ) from None
    except ssh.PermissionDenied as exc:
        raise DeviceError(
            f"device {device.name} refused the login of {device.user!r} ({exc.reason or 'permission denied'})",
            hint=f"add your public key to ~/.ssh/authorized_keys there, or give the key: edgesmith device add {device.name} {device.url} --key PATH --replace",
        ) from None
    except (TimeoutError, OSError) as exc:
        reason = exc.strerror or str(exc) if isinstance(exc, OSError) else f"no answer in {CONNECT_TIMEOUT_S:.0f} s"
        raise DeviceError(
            f"cannot reach device {device.name} at {device.host}:{device.port} ({reason or type(exc).__name__})",
            hint="check the address, the network, and that an SSH server runs there (`edgesmith device show NAME`)",
        ) from None


async def host_key(device: Device) -> str:
    """The device's host key as ``TYPE BASE64`` (to show and pin on first use), fetched without logging in."""

    ssh = _asyncssh()
    try:
        key = await ssh.get_server_host_key(device.host, device.port, config=None)
    except (TimeoutError, OSError, ssh.Error) as exc:
        raise DeviceError(f"cannot reach device {device.name} at {device.host}:{device.port} ({exc})", hint="check the address and the network") from None
    if key is None:
        raise DeviceError(f"device {device.name} sent no host key", hint="is this an SSH server?")
    return key.export_public_key("openssh").decode().strip()


def fingerprint(public_key: str) -> str:
    return str(_asyncssh().import_public_key(public_key).get_fingerprint("sha256"))


class Session:
    """A connected device: its facts, edgesmith's package on it, uploads, agent requests."""

    def __init__(self, conn: Any, device: Device, reporter: Any, partials: list[str] | None = None):
        self.conn, self.device, self.rep = conn, device, reporter
        self.partials = partials if partials is not None else []
        self.sent_bytes = 0
        self.sent_files = 0
        self.cached_files = 0
        self._pkg: str | None = None
        self.verify: list[str] = []  # blobs sent in this session: the agent checks their hash before use

    @property
    def work(self) -> str:
        if not self.device.work:
            raise DeviceError(f"device {self.device.name} was never probed", hint=f"edgesmith device probe {self.device.name}")
        return self.device.work

    async def script(self, source: str, *args: str) -> str:
        """``python -c source args`` on the device; its stdout, or a clear error."""

        proc = await self.conn.run(shlex.join([self.device.python, "-c", source, *args]), check=False)
        if proc.exit_status == 127:
            raise DeviceError(
                f"device {self.device.name} has no Python at {self.device.python!r}",
                hint=f"install Python 3.10+ there, or name it: edgesmith device add {self.device.name} {self.device.url} --python PATH --replace",
            )
        if proc.exit_status is None:
            raise Dropped("the connection closed while a command ran")
        if proc.exit_status != 0:
            tail = (str(proc.stderr or "").strip().splitlines() or ["no output"])[-1]
            raise DeviceError(f"a command failed on device {self.device.name}: {tail[:300]}", hint=f"edgesmith device probe {self.device.name}")
        return str(proc.stdout)

    async def probe(self) -> dict[str, Any]:
        facts = json.loads((await self.script(scripts.PROBE, self.device.workdir)).strip().splitlines()[-1])
        self.device.work = facts["work"]
        return facts

    async def ensure_package(self) -> str:
        """edgesmith's own package (this version, byte for byte) unpacked on the device; its folder."""

        if self._pkg:
            return self._pkg
        digest, files = package_tree()
        dest = f"{self.work}/pkg/{digest[:24]}"
        async with self.conn.start_sftp_client() as sftp:
            present = await sftp.exists(f"{dest}/edgesmith/device/agent.py")
        if not present:
            with tempfile.TemporaryDirectory(prefix="edgesmith-pkg-") as tmp:
                zpath = Path(tmp) / "edgesmith.zip"
                zpath.write_bytes(package_zip(files))
                shas = await self.upload({"edgesmith.zip": zpath}, check_space=True)
            await self.script(scripts.UNPACK, f"{self.work}/blobs/{shas['edgesmith.zip']}", dest)
        self._pkg = dest
        return dest

    async def upload(self, files: dict[str, Path], check_space: bool = True) -> dict[str, str]:
        """Every file onto the device by content (``blobs/<sha256>``); files already there are not sent.
        Returns ``{relative name: sha256}``. A partial upload is never taken for a whole one: it is written
        aside and renamed into place once complete."""

        shas = {rel: file_sha(p) for rel, p in files.items()}
        async with self.conn.start_sftp_client() as sftp:
            blobs = f"{self.work}/blobs"
            await sftp.makedirs(blobs, exist_ok=True)
            for tmp in list(self.partials):
                await _quietly(sftp.remove(tmp))
                self.partials.remove(tmp)
            missing: dict[str, Path] = {}
            for rel, sha in shas.items():
                if sha not in missing and not await sftp.exists(f"{blobs}/{sha}"):
                    missing[sha] = files[rel]
            self.cached_files += len(set(shas.values())) - len(missing)
            need = sum(p.stat().st_size for p in missing.values())
            if missing and check_space:
                free = await _free_bytes(sftp, self.work)
                if free is not None and need + FREE_MARGIN_BYTES > free:
                    raise DeviceError(
                        f"device {self.device.name} has {free / 2**20:.0f} MB free in {self.work}; the upload needs {need / 2**20:.1f} MB more",
                        hint=f"free space there, or use another folder: edgesmith device add {self.device.name} {self.device.url} --workdir PATH --replace",
                    )
            if missing:
                self.rep.info(f"[{self.device.name}] uploading {len(missing)} file(s), {need / 2**20:.1f} MB")
            for sha, path in missing.items():
                await self._put(sftp, path, f"{blobs}/{sha}")
                self.sent_bytes += path.stat().st_size
                self.sent_files += 1
        self.verify += list(missing)
        return shas

    async def _put(self, sftp: Any, path: Path, dest: str) -> None:
        ssh = _asyncssh()
        tmp = f"{dest.rsplit('/', 1)[0]}/.tmp-{dest.rsplit('/', 1)[1]}-{os.urandom(4).hex()}"
        self.partials.append(tmp)
        try:
            await sftp.put(str(path), tmp)
            await sftp.posix_rename(tmp, dest)
            self.partials.remove(tmp)
        except ssh.SFTPError as exc:
            await _quietly(sftp.remove(tmp))
            if "space" in str(exc.reason).lower() or isinstance(exc, ssh.SFTPNoSpaceOnFilesystem):
                raise DeviceError(
                    f"device {self.device.name} ran out of disk space receiving {path.name} ({exc.reason})",
                    hint=f"free space in {self.work} there, or use another folder: edgesmith device add {self.device.name} {self.device.url} --workdir PATH --replace",
                ) from None
            raise DeviceError(
                f"uploading {path.name} to device {self.device.name} failed: {exc.reason}", hint="check the work folder's permissions there"
            ) from None
        except BaseException:
            await _quietly(sftp.remove(tmp))
            raise

    async def agent(self, req: dict[str, Any], *, runtime: str | None = None) -> Any:
        """Send one request to the device agent; progress lines go to the reporter; the answer comes back."""

        pkg = await self.ensure_package()
        req = {**req, "work": self.work, "client": socket.gethostname(), "verify": list(self.verify)}
        cmd = shlex.join([self.device.python, "-c", scripts.BOOT, pkg, f"{self.work}/site"])
        proc = await self.conn.create_process(cmd, encoding="utf-8")
        try:
            proc.stdin.write(json.dumps(req) + "\n")
            async for line in proc.stdout:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if msg.get("event") == "progress":
                    self.rep.info(f"[{self.device.name}] {msg.get('text', '')}")
                elif msg.get("event") == "result":
                    self.verify = []
                    return msg.get("value")
                elif msg.get("event") == "error":
                    raise self._error(msg, runtime)
            stderr = await proc.stderr.read()
        finally:
            proc.close()
        if proc.exit_status == 127:
            await self.script("pass")  # says plainly that Python is missing
        if proc.exit_status is None or self.conn.is_closed():
            raise Dropped("the connection closed while the device worked")
        tail = (str(stderr).strip().splitlines() or ["no output"])[-1]
        if "ModuleNotFoundError" in tail or "ImportError" in tail:
            raise DeviceError(f"device {self.device.name} lacks what edgesmith needs: {tail[:200]}", hint=SETUP_HINT.format(name=self.device.name))
        raise DeviceError(f"edgesmith ended without an answer on device {self.device.name} (exit {proc.exit_status}): {tail[:300]}", hint="run again")

    def _error(self, msg: dict, runtime: str | None) -> Exception:
        name, kind, text, hint = self.device.name, msg.get("kind"), str(msg.get("message", "")), str(msg.get("hint") or "")
        if kind == "runtime":
            flag = f" --runtime {runtime}" if runtime else ""
            return DeviceError(f"on device {name}: {text}", hint=f"install it there: edgesmith device setup {name}{flag}")
        if kind in ("corrupt", "missing"):
            self.verify = []
            return Dropped(text)
        if kind == "busy":
            return DeviceError(f"device {name} is busy: {text}", hint=hint or "try again later")
        if kind == "internal":
            return RemoteFailure(f"edgesmith failed on device {name}: {text}", hint="a defect: please report it with this line", exit_code=EXIT_INTERNAL)
        return RemoteFailure(f"on device {name}: {text}", hint=hint or None, exit_code=int(msg.get("exit_code") or 2))


async def _quietly(aw: Awaitable[Any]) -> None:
    try:
        await asyncio.wait_for(aw, 5.0)
    except Exception:  # noqa: BLE001, S110 - best effort: the agent sweeps stale partial uploads anyway
        pass


async def _free_bytes(sftp: Any, path: str) -> int | None:
    try:
        st = await sftp.statvfs(path)
        return int(st.bavail * st.frsize)
    except Exception:  # noqa: BLE001 - a server without the statvfs extension: the upload itself will tell
        return None


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256(path)
    return _SHA_CACHE[key]


def package_tree() -> tuple[str, list[tuple[str, Path]]]:
    """edgesmith's package files a device needs (sources, built-in profiles and recipes; no weights, no
    compiled objects) and a digest of them all."""

    root = Path(__file__).resolve().parents[1]  # the edgesmith package folder
    skip = {".pyc", ".so", ".safetensors", ".pyd"}
    files = sorted((p.relative_to(root.parent).as_posix(), p) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix not in skip)
    h = hashlib.sha256()
    for rel, p in files:
        h.update(rel.encode() + b"\0" + file_sha(p).encode() + b"\n")
    return h.hexdigest(), files


def package_zip(files: list[tuple[str, Path]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for rel, p in files:
            info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, p.read_bytes())
    return buf.getvalue()
