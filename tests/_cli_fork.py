"""The ``cli`` fixture's runner: the real ``edgesmith`` entry point in a fresh process forked from a
server that imported torch, onnx, onnxruntime and the rest of a run's imports once (multiprocessing's forkserver), instead of a new
interpreter per call that imports them again (about 2 s each, over a hundred calls in the suite).

Each call is still its own process: its own exit code, stdout and stderr at the file-descriptor level,
working directory, environment and signal handlers; the parent's state is never touched. The server
only imports (it runs no torch or ONNX Runtime work, so no thread pool exists to be broken by a fork).
Calls whose environment changes what an interpreter imports at start-up (``PYTHONPATH``, ``PYTHONHOME``
...) go through a real new interpreter (``conftest.cli`` decides).
"""

from __future__ import annotations

import os
import sys

# What a CLI child would import again on each call, measured with -X importtime after the first line (s):
# sklearn (the digits data) 1.7, torch.export 1.7, onnxscript 0.9, torch.onnx 0.15, rich 0.04.
PRELOAD = [
    "tests._cli_fork",
    "numpy",
    "torch",
    "onnx",
    "onnxruntime",
    "onnxruntime.quantization",
    "torch.export",
    "torch.onnx",
    "onnxscript",
    "sklearn.base",
    "sklearn.datasets",
    "rich.console",
    "edgesmith.cli",
    "edgesmith.pipeline",
    "edgesmith.api",
    "edgesmith.optimize",
]


def run(argv: list[str], cwd: str, env: dict[str, str], out_path: str, err_path: str) -> None:
    """Child side: become ``edgesmith ARGV`` in ``cwd`` under ``env``; exit with its code."""
    import atexit
    import tempfile

    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # TMPDIR as the call's environment says, not as the server's was
    for fd, path in ((1, out_path), (2, err_path)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.argv = ["edgesmith", *argv]
    code = 0
    try:
        from edgesmith.cli import main

        main()
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # an escape the interpreter would print and exit 1 on
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        atexit._run_exitfuncs()  # what interpreter shutdown would run (os._exit below skips it)
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code & 0xFF)
