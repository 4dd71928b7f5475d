"""Where trials run: a local process pool (default) or a Ray cluster (``--ray ADDRESS``).

Both run a search in waves: the builds of a wave run side by side (one per worker, each pinned to its
own cores), then the wave is timed alone — nothing else of the search runs while latency is measured.
Locally that is the machine the search runs on. On Ray, builds are tasks spread over the nodes and
their folders come back through the object store; timing is one task on the node labelled with the
target's hardware (``ray start --labels edgesmith.hardware=<tag>``), or on this machine when no node is.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from edgesmith._lazy import require
from edgesmith.environment import env_number
from edgesmith.errors import ConfigError
from edgesmith.search.measure import race, race_remote
from edgesmith.search.trial import build_remote, unpack

LABEL = "edgesmith.hardware"
CONNECT_TIMEOUT_S = 5.0
INIT_TIMEOUT_S = 60.0
BUILD_CPUS = 1  # what one trial build asks Ray for, and the threads it then uses (no more: trials share nodes)
BUILD_TIMEOUT_S = 6 * 3600.0  # a hung trial is cancelled and recorded (EDGESMITH_RAY_BUILD_TIMEOUT_S overrides)
TIMING_TIMEOUT_S = 1800.0
NODE_CHECK_S = 5.0  # how often a wait on the labelled node checks that it is still alive


def hardware_tag(profile: Any) -> str:
    """The label value a node carries when it is the target's hardware, e.g. x86_64-avx512f-avx512_vnni."""
    raw = "-".join([profile.hardware.arch, *profile.hardware.isa]).lower()
    return re.sub(r"[^a-z0-9_.-]", "_", raw)[:63]


def local_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def local_measure(
    artifacts: list[Any], ref: Any, feeds: dict, threads: int, reporter: Any = None, errors: dict | None = None, rounds: int = 10
) -> tuple[list, dict | None, str]:
    """The race on this machine (search.measure.race); also optimize's and tune's timing."""

    res, machine = race(artifacts, ref, feeds, threads, rounds=rounds, reporter=reporter, errors=errors)
    return res, machine, socket.gethostname()


class LocalPool:
    """Up to ``workers`` trial builds at once, each a process of its own pinned to its own slot of the
    cores: forked from a zygote that imported the build stack once (search/zygote.py), or, where the
    zygote cannot start, a fresh interpreter per build (search/worker.py)."""

    kind = "local"
    POLL_S = 0.2

    def __init__(self, workers: int):
        cores = local_cores()
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}", hint="leave it out to use one per core")
        self.workers = workers
        per = max(1, len(cores) // workers)
        self.slots = [cores[(j * per) % len(cores) : (j * per) % len(cores) + per] for j in range(workers)]
        self._running: list[_Build] = []
        self._zygote: Any = None
        self._zygote_failed = False
        self.notes: list[str] = []
        if workers > len(cores):
            self.notes.append(f"{workers} workers on {len(cores)} cores: builds share cores")

    def describe(self) -> str:
        return f"local process pool, {self.workers} worker(s), cores {self.slots}"

    def build_wave(self, jobs: list[dict]) -> list[dict]:
        out: list[dict] = []
        with tempfile.TemporaryDirectory(prefix="edgesmith-wave-") as tmp:
            builds = []
            for j, job in enumerate(jobs):
                jp, rp, lp = Path(tmp) / f"job{j}.json", Path(tmp) / f"result{j}.json", Path(tmp) / f"log{j}.txt"
                jp.write_text(json.dumps(dict(job, cores=self.slots[j % self.workers]), default=str))
                builds.append(self._start(jp, rp, lp))
            self._running = builds
            while any(b.alive() for b in builds):
                time.sleep(self.POLL_S)
            for b in builds:
                if b.result.is_file():
                    out.append(json.loads(b.result.read_text()))
                else:
                    tail = (b.log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1][:200] if b.log.is_file() else "no output"
                    out.append({"ok": False, "error": f"the build process died{b.exit_text()}: {tail}", "seconds": 0})
            self._running = []
        return out

    def _start(self, job: Path, result: Path, log: Path) -> _Build:
        zygote = self._ensure_zygote()
        if zygote is not None:
            try:
                zygote.stdin.write(json.dumps({"job": str(job), "result": str(result), "log": str(log)}) + "\n")
                zygote.stdin.flush()
                return _Build(result, log, pid=int(json.loads(zygote.stdout.readline())["pid"]))
            except (OSError, ValueError, KeyError):  # the zygote died: this and later builds start their own interpreter
                self._stop_zygote()
                self._zygote_failed = True
        with open(log, "wb") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "edgesmith.search.worker", str(job), str(result)], stdout=fh, stderr=subprocess.STDOUT)
        return _Build(result, log, proc=proc)

    def _ensure_zygote(self) -> Any:
        if self._zygote_failed or not hasattr(os, "fork"):
            return None
        if self._zygote is None or self._zygote.poll() is not None:
            try:
                self._zygote = subprocess.Popen(
                    [sys.executable, "-m", "edgesmith.search.zygote"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
                )
                if "ready" not in json.loads(self._zygote.stdout.readline() or "{}"):
                    raise OSError("the zygote did not start")
            except (OSError, ValueError):
                self._stop_zygote()
                self._zygote_failed = True
                self.notes.append("builds ran in a fresh interpreter each (the build zygote did not start)")
                return None
        return self._zygote

    def _stop_zygote(self) -> None:
        z, self._zygote = self._zygote, None
        if z is not None:
            try:
                z.stdin.close()  # end of input ends the zygote
                z.wait(timeout=10)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                z.kill()

    def measure(
        self, artifacts: list[Any], ref: Any, feeds: dict, threads: int, reporter: Any = None, errors: dict | None = None, rounds: int = 10
    ) -> tuple[list, dict | None, str]:
        return local_measure(artifacts, ref, feeds, threads, reporter, errors, rounds)

    def close(self, cancel: bool = False) -> None:
        for b in self._running:  # interrupted: stop the builds now (their trials stay "running" and run again on resume)
            b.terminate()
        self._running = []
        self._stop_zygote()


class _Build:
    """One running build: a fork of the zygote (known by pid; the kernel reaps it) or a Popen."""

    def __init__(self, result: Path, log: Path, pid: int | None = None, proc: Any = None):
        self.result, self.log, self.pid, self.proc = result, log, pid, proc

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        try:
            os.kill(self.pid, 0)  # type: ignore[arg-type]
        except ProcessLookupError:
            return False
        except PermissionError:  # the pid was reused by another user's process: ours is gone
            return False
        return _not_a_zombie(self.pid)

    def terminate(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
            return
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)  # type: ignore[arg-type]
            except ProcessLookupError:
                pass

    def exit_text(self) -> str:
        return f" (exit {self.proc.returncode})" if self.proc is not None else ""


def _not_a_zombie(pid: int | None) -> bool:
    """False when ``pid`` has exited but nobody reaped it (an orphan under a PID 1 that does not reap,
    as in some containers); from /proc/PID/stat's state field where there is a /proc."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc (macOS): os.kill said it exists
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _reachable(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if address.startswith("ray://"):
        raise ConfigError("Ray Client addresses (ray://) are not supported", hint="give the head's GCS address, e.g. --ray 10.0.0.5:6379")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray takes HOST:PORT of the cluster's head, got {address!r}", hint="e.g. --ray 127.0.0.1:6379")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, (socket.timeout, TimeoutError)) else (exc.strerror or type(exc).__name__)
        raise ConfigError(
            f"cannot reach the Ray cluster at {address}: {why} (after at most {CONNECT_TIMEOUT_S:.0f} s)",
            hint="start the head with `ray start --head --port PORT` and check the address, or leave --ray out to search locally",
        ) from None
    return host, int(port)


class RayPool:
    """Trials as Ray tasks. Connects with a timeout: an unreachable address is a clear error, not a hang."""

    kind = "ray"

    def __init__(self, address: str, profile: Any, cache: Path | None):

        require("ray")
        _reachable(address)
        import ray

        done: dict[str, Any] = {}

        def connect() -> None:
            try:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, include_dashboard=False)
                done["ok"] = True
            except Exception as exc:  # noqa: BLE001
                done["error"] = exc

        t = threading.Thread(target=connect, daemon=True)
        t.start()
        t.join(INIT_TIMEOUT_S)
        if "ok" not in done:
            why = f"{type(done['error']).__name__}: {str(done['error']).splitlines()[0][:200]}" if "error" in done else f"no answer in {INIT_TIMEOUT_S:.0f} s"
            raise ConfigError(
                f"{address} answers but is not a usable Ray cluster ({why})", hint="check that it is the head's GCS port (ray start --head prints it)"
            )
        self.ray = ray
        self.tag = hardware_tag(profile)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.node_count = len(nodes)
        self.workers = max(1, int(sum(n["Resources"].get("CPU", 0) for n in nodes)))
        tagged = [n for n in nodes if (n.get("Labels") or {}).get(LABEL) == self.tag]
        self.timing_cpus = min([int(n["Resources"].get("CPU", 1)) for n in tagged] or [1])
        self.tagged = bool(tagged)
        self.notes: list[str] = [] if tagged else [f"no Ray node is labelled {LABEL}={self.tag}: latency was timed on the machine running the search"]
        self.cache = cache

    def describe(self) -> str:
        return (
            f"Ray cluster, {self.node_count} node(s), {self.workers} CPU(s); timing on the node labelled {LABEL}={self.tag}"
            if self.tagged
            else f"Ray cluster, {self.node_count} node(s), {self.workers} CPU(s); timing on this machine"
        )

    def build_wave(self, jobs: list[dict]) -> list[dict]:
        """Each trial a Ray task of ``BUILD_CPUS`` CPU(s) that also uses no more threads than that (a build that
        took every core of its node would slow the others Ray placed beside it). A task whose worker or node
        dies is retried once on another; one that hangs past ``BUILD_TIMEOUT_S`` is cancelled and recorded."""

        task = self.ray.remote(num_cpus=BUILD_CPUS, scheduling_strategy="SPREAD", max_retries=1, retry_exceptions=False)(build_remote)
        refs = [task.remote(dict(job, cores=None, threads=BUILD_CPUS)) for job in jobs]
        out = []
        timeout_s = env_number("EDGESMITH_RAY_BUILD_TIMEOUT_S", BUILD_TIMEOUT_S, whole=False, minimum=1)
        deadline = time.time() + timeout_s
        for job, ref in zip(jobs, refs):
            try:
                res = self.ray.get(ref, timeout=max(1.0, deadline - time.time()))
            except self.ray.exceptions.GetTimeoutError:
                self.ray.cancel(ref, force=True)
                res = {"ok": False, "error": f"the trial hung: no result in {timeout_s:.0f} s, cancelled", "seconds": timeout_s}
            except Exception as exc:  # noqa: BLE001 - the task failed, or its node died twice
                res = {"ok": False, "error": f"Ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", "seconds": 0}
            data = res.pop("tar", None)
            if data:
                unpack(data, Path(job["trial_dir"]))
            out.append(res)
        return out

    def measure(
        self, artifacts: list[Any], ref: Any, feeds: dict, threads: int, reporter: Any = None, errors: dict | None = None, rounds: int = 10
    ) -> tuple[list, dict | None, str]:
        if not self.tagged:
            return local_measure(artifacts, ref, feeds, threads, reporter, errors, rounds)
        if not self._tagged_alive():
            return self._lost(f"no live Ray node is labelled {LABEL}={self.tag} any more", artifacts, ref, feeds, threads, reporter, errors, rounds)

        files: dict[str, bytes] = {}
        names = []
        for i, a in enumerate([ref, *artifacts]):
            for f in sorted(Path(a.path).parent.glob(Path(a.path).stem + ".*")):
                if f.suffix in (".onnx", ".xml", ".bin", ".data"):
                    files[f"a{i}-{f.name}"] = f.read_bytes()
            names.append(f"a{i}-{Path(a.path).name}")
        # NOTE: the whole tagged node (every CPU it has): nothing else of the search runs there while it times
        task = self.ray.remote(num_cpus=self.timing_cpus, label_selector={LABEL: self.tag}, max_retries=1)(race_remote)
        ref_ = task.remote(files, names[1:], names[0], ref.backend, [a.options for a in artifacts], ref.options, feeds, threads)
        deadline = time.time() + TIMING_TIMEOUT_S
        try:
            while True:  # NOTE: waited on in slices: a retry bound to a labelled node that died would wait forever
                try:
                    return self.ray.get(ref_, timeout=max(0.1, min(NODE_CHECK_S, deadline - time.time())))
                except self.ray.exceptions.GetTimeoutError:
                    if time.time() < deadline and self._tagged_alive():
                        continue
                    self.ray.cancel(ref_, force=True)
                    if time.time() < deadline:
                        return self._lost(
                            f"the Ray node labelled {LABEL}={self.tag} died while timing", artifacts, ref, feeds, threads, reporter, errors, rounds
                        )
                    if errors is not None:
                        errors.update({i: f"timing on the Ray node hung past {TIMING_TIMEOUT_S:.0f} s" for i in range(len(artifacts))})
                    return [None] * len(artifacts), None, "ray"
        except Exception as exc:  # noqa: BLE001 - the labelled node or its worker died (after Ray's retry)
            why = f"timing on the labelled Ray node failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
            return self._lost(why, artifacts, ref, feeds, threads, reporter, errors, rounds)

    def _tagged_alive(self) -> bool:
        return any(n.get("Alive") and (n.get("Labels") or {}).get(LABEL) == self.tag for n in self.ray.nodes())

    def _lost(self, why: str, *args: Any) -> tuple[list, dict | None, str]:
        """The labelled node is gone: this wave is timed on the machine running the search, and the record says so."""
        note = f"{why}: latency was timed on the machine running the search from then on"
        if note not in self.notes:
            self.notes.append(note)
        self.tagged = False
        return local_measure(*args)

    def close(self, cancel: bool = False) -> None:
        self.ray.shutdown()
