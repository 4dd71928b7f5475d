"""The Python API: the CLI's commands for notebooks and training scripts.

Each function builds the same ``Recipe`` the CLI builds and returns typed results; errors are the
typed ``edgesmith.errors`` exceptions the CLI maps to exit codes (``ConfigError``/``InputError`` ->
2, ``ProfileViolation`` -> 1). Models may be an in-memory ``nn.Module`` (with ``example_inputs`` or
``inputs`` specs), a factory string or an ONNX path; data may be arrays, a dict of arrays, a torch
``DataLoader`` or any iterable of batches (``x`` or ``(x, labels)`` or ``{name: x}``)::

    import edgesmith
    result = edgesmith.quantize(model, example_inputs=torch.randn(1, 1, 8, 8),
                                calibration=x_train[:256], evaluation=(x_test, y_test),
                                target="x86-avx512-vnni-ort", out_dir="out/int8")
    result.verdict, result.metrics["top1"], result.speedup, result.artifacts
"""

from edgesmith.api.build import Result, compile, export, optimize, pass_for_mode, quantize, run, validate
from edgesmith.api.measure import BenchResult, baseline_save, bench, check, compare, search, tune

__all__ = [
    "BenchResult",
    "Result",
    "baseline_save",
    "bench",
    "check",
    "compare",
    "compile",
    "export",
    "optimize",
    "pass_for_mode",
    "quantize",
    "run",
    "search",
    "tune",
    "validate",
]
