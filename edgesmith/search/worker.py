"""``python -m edgesmith.search.worker JOB.json RESULT.json``: one trial's build in a fresh process.

A process per trial: a crash in native code, a leak or a hung library takes down that trial only, and
the parent needs no ``if __name__ == "__main__"`` guard (multiprocessing's spawn would re-run its script).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    job = json.loads(Path(sys.argv[1]).read_text())
    from edgesmith.search.trial import build

    result = build(job)
    tmp = Path(sys.argv[2] + ".part")
    tmp.write_text(json.dumps(result, default=str))
    tmp.replace(sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
