"""``python -m edgesmith.search.worker JOB.json RESULT.json``: one trial's build in a fresh process (the
fallback where the zygote, search/zygote.py, cannot run; each of its forks calls ``run_job`` too).

A process per trial: a crash in native code, a leak or a hung library takes down that trial only, and
the parent needs no ``if __name__ == "__main__"`` guard (multiprocessing's spawn would re-run its script).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def run_job(job_path: str, result_path: str) -> None:
    """Build the trial described in JOB.json; its summary goes to RESULT.json (written whole, or not at all)."""
    job = json.loads(Path(job_path).read_text())
    from edgesmith.search.trial import build

    result = build(job)
    tmp = Path(result_path + ".part")
    tmp.write_text(json.dumps(result, default=str))
    tmp.replace(result_path)


def main() -> int:
    run_job(sys.argv[1], sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
