"""Was the machine free while we timed? Other processes' CPU use, hypervisor steal and drift between rounds.

A latency ratio is only as good as the machine it was measured on. With one other busy process on a
2-core host, a 2-thread inference shares a core with it: every parallel op waits for its slowest
thread, so the larger (float) model loses far more than the smaller one, and a speed-up came out at
7.5x where 3.3x was true — with an interval that did not contain the truth, because the bias is
systematic, not noise. No statistic on the timings alone can undo that, so the measurement itself
records what else ran:

- ``others_cores``: CPU time used by other processes during the timing, in cores (``/proc/stat``'s
  busy time minus this process's own, over wall time). Busy when it exceeds the cores our threads
  leave free (``cpus - threads``) by more than ``SPARE_SLACK``.
- ``steal``: the share of CPU time the hypervisor gave to other guests (``/proc/stat`` steal).
- ``round_cv``: spread of the per-round medians of each session (drift within the measurement).

``snapshot()`` is taken in the benchmark child right before and after the timed loop; ``assess``
turns two snapshots into a verdict that travels with the timings (``BenchStats.machine``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgesmith.environment import env_number

SPARE_SLACK = 0.25  # cores of other work tolerated beyond the free ones (daemons, the parent process, the kernel)
MAX_STEAL = 0.05
MIN_WINDOW_S = 0.25  # /proc/stat counts in 10 ms ticks: a shorter window cannot tell a busy core from rounding
MAX_ROUND_CV = 0.5  # per-round medians of one session varying more than this: the machine's state changed under us
# NOTE: quiet runs here gave 0.02-0.19 for a 20 us model (10 runs a round); one busy core gave 0.1-3.0 — the
# CPU-time count above is the dependable signal, this one catches contention it cannot see (another VM, thermal)


@dataclass
class Snapshot:
    wall: float
    process_cpu: float  # seconds of CPU this process (all threads) and its parent used
    busy: float | None  # host-wide busy CPU seconds (/proc/stat), None off Linux
    steal: float | None
    total: float | None
    load1: float | None


@dataclass
class Machine:
    busy: bool
    cpus: int
    threads: int
    others_cores: float | None = None
    steal: float | None = None
    load1: float | None = None
    round_cv: float | None = None
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "quiet"


def _proc_stat() -> tuple[float, float, float] | None:
    """(busy, steal, total) CPU seconds summed over all CPUs, from the first line of /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [float(x) for x in fields[1:]]
    hz = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
    # user nice system idle iowait irq softirq steal guest guest_nice (guest time is already in user)
    total = sum(ticks[:8])
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0.0)
    steal = ticks[7] if len(ticks) > 7 else 0.0
    return (total - idle - steal) / hz, steal / hz, total / hz


def _parent_cpu() -> float:
    """CPU seconds of the parent (the edgesmith process waiting on this benchmark child: its progress display is ours)."""
    try:
        with open(f"/proc/{os.getppid()}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (float(fields[11]) + float(fields[12])) / float(os.sysconf("SC_CLK_TCK"))
    except (OSError, IndexError, ValueError, AttributeError):
        return 0.0


def snapshot() -> Snapshot:
    t = os.times()
    stat = _proc_stat()
    try:
        load1 = os.getloadavg()[0]
    except (OSError, AttributeError):
        load1 = None
    busy, steal, total = stat if stat else (None, None, None)
    return Snapshot(time.perf_counter(), t.user + t.system + _parent_cpu(), busy, steal, total, load1)


def round_spread(times_per_session: Sequence[Sequence[float]], rounds: int) -> float | None:
    """Largest coefficient of variation of per-round medians across sessions (None with < 3 rounds)."""
    if rounds < 3:
        return None
    worst = 0.0
    for times in times_per_session:
        medians = np.array([np.median(r) for r in np.array_split(np.asarray(times, dtype=float), rounds) if len(r)])
        if len(medians) >= 3 and medians.mean() > 0:
            worst = max(worst, float(medians.std(ddof=1) / medians.mean()))
    return worst


def assess(before: Snapshot, after: Snapshot, threads: int, round_cv: float | None = None, cpus: int | None = None) -> Machine:
    """Whether other work competed with a measurement that used ``threads`` threads between two snapshots."""
    cpus = cpus or os.cpu_count() or 1
    m = Machine(False, cpus, threads, load1=after.load1, round_cv=round_cv)
    wall = max(after.wall - before.wall, 1e-9)
    if before.busy is not None and after.busy is not None and wall >= MIN_WINDOW_S:
        mine = max(after.process_cpu - before.process_cpu, 0.0)
        m.others_cores = round(max(after.busy - before.busy - mine, 0.0) / wall, 3)
        spare = max(cpus - threads, 0)
        if m.others_cores > spare + SPARE_SLACK:
            m.reasons.append(f"other processes used {m.others_cores:.2f} cores while {threads} threads were timed on {cpus}")
        total = after.total - before.total if after.total is not None and before.total is not None else 0.0
        if total > 0 and after.steal is not None and before.steal is not None:
            m.steal = round((after.steal - before.steal) / total, 4)
            if m.steal > MAX_STEAL:
                m.reasons.append(f"the hypervisor took {m.steal:.0%} of the CPU time (steal)")
    if round_cv is not None and round_cv > MAX_ROUND_CV:
        m.reasons.append(f"per-round medians varied by {round_cv:.0%} (the machine's state changed during the measurement)")
    m.busy = bool(m.reasons)
    return m


def merged(machines: Sequence[dict | None]) -> dict | None:
    """Several measurements of one thing (pooled re-measurements) as one record: busy if any was."""
    got = [m for m in machines if m]
    if not got:
        return None
    worst = max(got, key=lambda m: (m.get("busy", False), m.get("others_cores") or 0.0))
    reasons = list(dict.fromkeys(r for m in got for r in m.get("reasons", [])))
    return {**worst, "busy": any(m.get("busy") for m in got), "reasons": reasons}


QUIET_WAIT_S = 10.0  # longest wait for a busy machine to quiet down before timing again
# EDGESMITH_QUIET_WAIT_S overrides it: a machine that is busy on purpose (parallel test workers, a CI
# runner that builds beside the gate) will not quiet down, and waiting for it only adds time


BUSY_RETRIES = 2  # times a timing taken on a busy machine is taken again (after waiting for quiet)
# EDGESMITH_BUSY_RETRIES overrides it: on a runner busy on purpose every retry is busy too, and is only time


def _env_setting(name: str, default: float, whole: bool) -> float:
    """``name`` from the environment (a finite number >= 0; ``whole``: an integer), else ``default``."""
    return env_number(name, default, whole=whole)


def busy_retries() -> int:
    """How many times a busy timing is taken again: ``EDGESMITH_BUSY_RETRIES`` (a whole number >= 0) or 2."""
    return int(_env_setting("EDGESMITH_BUSY_RETRIES", BUSY_RETRIES, whole=True))


def wait_for_quiet(threads: int, timeout_s: float | None = None, sample_s: float = 0.5) -> bool:
    """Sample the machine until other processes leave ``threads`` cores free (True) or ``timeout_s`` passes (False)."""
    if timeout_s is None:
        timeout_s = _env_setting("EDGESMITH_QUIET_WAIT_S", QUIET_WAIT_S, whole=False)
    deadline = time.monotonic() + timeout_s
    while True:
        before = snapshot()
        time.sleep(sample_s)
        if not assess(before, snapshot(), threads).busy:
            return True
        if time.monotonic() >= deadline:
            return False
