"""``python -m edgesmith.search.zygote``: a process that imports the build stack once and forks one
child per trial build.

A trial's build in a fresh interpreter spent about 3 s importing torch, onnx and onnxruntime before any
work, on every trial (on the bundled digits CNN that was more than half of each build). The zygote pays
that once per search; each build is still a process of its own (a crash, a leak or a hung library takes
down that trial only, and Ctrl-C reaches it as before). It imports and never computes, so no thread pool
exists yet when it forks.

Protocol, one JSON object per line: the pool writes ``{"job": JOB.json, "result": RESULT.json, "log":
LOG.txt}`` on stdin; the zygote answers ``{"pid": N}`` once the child is forked. The child writes
RESULT.json (atomically, as ``search/worker.py`` does) and exits; children are reaped by the kernel
(SIGCHLD ignored), so the pool knows a build ended when its pid is gone. End of stdin ends the zygote.
"""

from __future__ import annotations

import json
import os
import signal
import sys

# What a build imports before its first step (python -X importtime, s): torch ~1.5, torch.export 1.7,
# onnxscript (the exporter) 0.9, onnx 0.8, onnxruntime and its quantizer 0.1.
PRELOAD = (
    "numpy",
    "torch",
    "torch.export",
    "torch.onnx",
    "onnxscript",
    "onnx",
    "onnxruntime",
    "onnxruntime.quantization",
    "edgesmith.pipeline",
    "edgesmith.search.trial",
)


def _child(req: dict) -> None:
    """In the forked child: run one build, write its result, exit without returning to the loop."""
    code = 1
    try:
        fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # the zygote's request pipe is not the build's
        os.close(null)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the build's own children (benchmark workers) are waited for
        from edgesmith.search.worker import run_job

        run_job(req["job"], req["result"])
        code = 0
    except BaseException:  # noqa: BLE001 - the child must never fall back into the zygote's loop
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> int:
    import importlib

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the builds and the pool; the pool closes our stdin
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reaped by the kernel: a finished build's pid disappears
    for name in PRELOAD:
        importlib.import_module(name)
    out = sys.stdout
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req)
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
