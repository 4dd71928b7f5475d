"""The CI gate: store a run as a baseline, then judge later runs against it.

``baseline.py`` records a run (metrics, latency samples, artifact hashes, recipe, versions) and the
artifacts themselves; ``check.py`` compares a new run with it, target by target, using ``noise.py``
to tell a regression from measurement noise; ``junit.py`` and ``markdown.py`` write what CI systems
and pull requests show. The HTML report lives in ``edgesmith.reporting``.
"""

from edgesmith.gate.baseline import load_baseline, save_baseline
from edgesmith.gate.check import GateReport, check_run

__all__ = ["GateReport", "check_run", "load_baseline", "save_baseline"]
