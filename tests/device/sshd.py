"""A real SSH server (asyncssh) on 127.0.0.1, in a thread of the test process: commands run through
``/bin/sh -c`` as sshd runs them, SFTP serves the file system, and faults can be switched on.

Faults (``server.faults``): ``drop_upload_after`` bytes written over SFTP before the connection is cut
(once per value set), ``disk_full`` (every SFTP write fails with no space left), ``drop_exec_after``
seconds into the next command (the connection is cut, once), ``drop_exec_every`` the same for every command."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import asyncssh


class _Server(asyncssh.SSHServer):
    def __init__(self, owner: SSHD):
        self.owner = owner

    def connection_made(self, conn: Any) -> None:
        self.owner.connections.append(conn)


class SSHD:
    def __init__(self, env_bin: Path, authorized: str, host_key: Any | None = None):
        self.env_bin = env_bin
        self.authorized = authorized
        self.host_key = host_key or asyncssh.generate_private_key("ssh-ed25519")
        self.faults: dict[str, Any] = {}
        self.connections: list[Any] = []
        self.commands: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.acceptor: Any = None
        self.port = 0

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, port: int = 0) -> SSHD:
        self.acceptor = self.call(self._start(port))
        self.port = self.acceptor.sockets[0].getsockname()[1]
        return self

    async def _start(self, port: int) -> Any:
        owner = self

        class Sftp(asyncssh.SFTPServer):
            async def write(self, file_obj: Any, offset: int, data: bytes) -> int:
                if owner.faults.get("disk_full"):
                    raise asyncssh.SFTPFailure("No space left on device")
                limit = owner.faults.get("drop_upload_after")
                if limit is not None:
                    owner.faults["_written"] = owner.faults.get("_written", 0) + len(data)
                    if owner.faults["_written"] > limit:
                        owner.faults.pop("drop_upload_after")
                        owner.faults["_written"] = 0
                        self.channel.get_connection().abort()
                return await asyncio.get_running_loop().run_in_executor(None, lambda: _write(file_obj, offset, data))

        return await asyncssh.create_server(
            lambda: _Server(owner),
            "127.0.0.1",
            port,
            server_host_keys=[self.host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(self.authorized),
            process_factory=self._process,
            sftp_factory=Sftp,
            allow_scp=False,
            keepalive_interval=0,
        )

    async def _process(self, process: Any) -> None:
        cmd = process.command or ""
        self.commands.append(cmd)
        env = {**os.environ, "PATH": f"{self.env_bin}{os.pathsep}/usr/bin:/bin", "SSH_CLIENT": "127.0.0.1 0 22"}
        for var in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "COV_CORE_SOURCE"):
            env.pop(var, None)
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
        )
        drop = self.faults.pop("drop_exec_after", None) or self.faults.get("drop_exec_every")
        if drop is not None:
            asyncio.get_running_loop().call_later(drop, process.channel.get_connection().abort)

        # NOTE: pumped by hand, not process.redirect: redirect races the child's exit (the channel closes
        # while stderr is still being fed, and asyncssh drops the whole connection)
        async def pump_in() -> None:
            try:
                while data := await process.stdin.read(65536):
                    proc.stdin.write(data.encode() if isinstance(data, str) else data)
                    await proc.stdin.drain()
            except Exception:  # noqa: BLE001, S110 - the client went away: the child sees end of input
                pass
            finally:
                proc.stdin.close()  # sshd closes the pipe when the client goes: the agent's lifeline

        async def pump_out(src: Any, dst: Any) -> None:
            while data := await src.read(65536):
                try:
                    dst.write(data.decode(errors="replace") if process.channel.get_encoding()[0] else data)
                except Exception:  # noqa: BLE001 - the channel is gone; keep draining the child
                    pass

        feeder = asyncio.ensure_future(pump_in())
        await asyncio.gather(pump_out(proc.stdout, process.stdout), pump_out(proc.stderr, process.stderr))
        status = await proc.wait()
        feeder.cancel()
        try:
            process.exit(status)
        except Exception:  # noqa: BLE001, S110 - the client is already gone
            pass

    def swap_host_key(self) -> None:
        """Restart on the same port with a new host key (a reinstalled device)."""
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.acceptor.close()
        self.call(self.acceptor.wait_closed())
        self.acceptor = self.call(self._start(self.port))

    def stop(self) -> None:
        for c in self.connections:
            self.loop.call_soon_threadsafe(c.abort)
        if self.acceptor is not None:
            self.acceptor.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _write(file_obj: Any, offset: int, data: bytes) -> int:
    file_obj.seek(offset)
    return file_obj.write(data)
