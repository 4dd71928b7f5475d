"""Run each given ``edgesmith.BinaryConv`` model through every route (edgesmith's ONNX Runtime and OpenVINO
backends, and OpenVINO's compiled extension directly, which checks in C++ alone); print one JSON line per
case. Run as a child process: if native code crashed, the parent sees the exit status, not a dead test run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"


def main() -> None:
    import openvino as ov

    from edgesmith.runtime import Artifact, get_backend
    from edgesmith.runtime.kernels.ov_extension import library_path

    for line in sys.stdin:
        case = json.loads(line)
        path, feed = Path(case["model"]), {"x": np.random.default_rng(0).standard_normal(case["x"]).astype(np.float32)}
        out: dict = {"id": case["id"]}
        try:
            out["ort"] = np.asarray(get_backend("onnxruntime").load(Artifact(path, "onnxruntime"), 1).run(feed)[0]).tolist()
        except Exception as exc:  # noqa: BLE001 - the outcome is the subject
            out["ort_error"] = _short(exc)
        try:
            core = ov.Core()
            core.add_extension(library_path())
            compiled = core.compile_model(core.read_model(str(path)), "CPU")
            out["ov_native"] = np.asarray(compiled(feed)[0]).tolist()
        except Exception as exc:  # noqa: BLE001
            out["ov_native_error"] = _short(exc)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
