"""The timing phase of a search: the trials of one wave and the float model, timed interleaved round by
round in one child process (the same drift hits all), each as an application calls its runtime. It runs
only when no build runs (the scheduler's waves), so trials never time each other's noise.

A race taken while other work competed for the cores (runtime.contention) is biased, not noisy: it is
taken again after waiting for quiet; if it stays busy its figures are kept as estimates, marked busy.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgesmith.runtime.base import Artifact
from edgesmith.runtime.race import race, time_interleaved
from edgesmith.search.trial import node_id, pin

__all__ = ["race", "race_remote", "time_interleaved"]


def race_remote(
    files: dict[str, bytes], names: list[str], ref_name: str, backend: str, options: list[dict], ref_options: dict, feeds: dict, threads: int
) -> tuple[list[dict | None], dict | None, str]:
    """The Ray flavour, run on the node tagged with the target: artifacts arrive as bytes (object store)."""

    pin(None)
    with tempfile.TemporaryDirectory(prefix="edgesmith-race-") as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        arts = [Artifact(Path(tmp) / n, backend, o) for n, o in zip(names, options)]
        ref = Artifact(Path(tmp) / ref_name, backend, ref_options)
        res, machine = race(arts, ref, feeds, threads)
    return res, machine, node_id()
