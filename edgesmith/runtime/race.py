"""The race: artifacts and their float model timed interleaved round by round in one child process (the
same drift hits all), each as an application calls its runtime; every speed-up over the float model with a
95% bootstrap interval over rounds. optimize, tune and search time their candidates here, on this machine,
on a Ray node or on a device over SSH (``edgesmith.device.agent``): one measurement path.

A race taken while other work competed for the cores (runtime.contention) is biased, not noisy: it is
taken again after waiting for quiet; if it stays busy its figures are kept as estimates, marked busy.
"""

from __future__ import annotations

from typing import Any

from edgesmith.runtime.base import same_model
from edgesmith.runtime.bench import run_worker
from edgesmith.runtime.compare import bootstrap_ratio
from edgesmith.runtime.contention import busy_retries, wait_for_quiet


def race(
    artifacts: list[Any],
    ref: Any,
    feeds: dict,
    threads: int,
    rounds: int = 10,
    per_round: int = 10,
    reporter: Any = None,
    errors: dict[int, str] | None = None,
) -> tuple[list[dict | None], dict | None]:
    """Each artifact's latency and speed-up over ``ref`` (FP32) with a 95% bootstrap interval over rounds.
    Returns (one record per artifact, None where it could not be timed; the machine record). ``errors``,
    when given, is filled with why each untimed artifact failed (by its index in ``artifacts``).
    optimize's race and the search's timing phase both come here: one measurement path."""

    everything = [ref, *artifacts]
    machine: dict | None = None
    results: list[dict | None] = []
    for attempt in range(1 + busy_retries()):
        if attempt:
            if reporter is not None:
                reasons = "; ".join((machine or {}).get("reasons") or [])
                reporter.info(f"the machine was busy while timing{f' ({reasons})' if reasons else ''}: waiting for it to quiet down, then timing again")
            wait_for_quiet(threads)
        results, failed = time_interleaved(everything, feeds, threads, rounds, per_round)
        if errors is not None:
            errors.clear()
            errors.update({i - 1: why for i, why in failed.items()})
        machine = next((r.get("machine") for r in results if r), None)
        if not (machine and machine.get("busy")):
            break
    base = results[0]
    if base is None:
        return [None] * len(artifacts), machine
    split = lambda times: [times[i * per_round : (i + 1) * per_round] for i in range(rounds)]  # noqa: E731
    out: list[dict | None] = []
    for art, res in zip(artifacts, results[1:]):
        if res is None:
            out.append(None)
            continue
        ratio, low, high = bootstrap_ratio(split(res["times_ms"]), split(base["times_ms"]), paired=True)
        if same_model(art, ref):  # the float model itself (a trial that changed nothing): exactly 1, not noise around it
            ratio = low = high = 1.0
        out.append(
            {
                "p50_ms": res["p50_ms"],
                "p90_ms": res["p90_ms"],
                "p95_ms": res["p95_ms"],
                "p99_ms": res["p99_ms"],
                "fp32_p50_ms": base["p50_ms"],
                "speedup": ratio,
                "low": low,
                "high": high,
                "busy": bool(machine and machine.get("busy")),
            }
        )
    return out, machine


def time_interleaved(artifacts: list[Any], feeds: dict, threads: int, rounds: int, per_round: int) -> tuple[list[dict | None], dict[int, str]]:
    """One child times them all, round by round (``artifacts[0]`` is the float baseline); when one artifact breaks the
    shared child, each other is timed beside the baseline alone. Returns the raw records (None where timing failed)
    and, by index, why it failed. optimize's race uses it too."""

    try:
        timed: list[dict | None] = list(run_worker(artifacts, feeds, threads, 10, rounds * per_round, None, rounds, raw=True))
        return timed, {}
    except Exception:  # noqa: BLE001
        results: list[dict | None] = [None] * len(artifacts)
        errors: dict[int, str] = {}
        for i in range(1, len(artifacts)):
            try:
                results[0], results[i] = run_worker([artifacts[0], artifacts[i]], feeds, threads, 10, rounds * per_round, None, rounds, raw=True)
            except Exception as exc:  # noqa: BLE001 - this one cannot be timed; the caller records it as failed
                errors[i] = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return results, errors
