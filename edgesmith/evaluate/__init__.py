"""The evaluator: accuracy of an artifact against its float model, and budgets judged on the result.

One component (``Evaluator``) serves the pipeline, ``tune``, ``optimize`` and the device-side
``validate RUN_DIR``; ``judge`` turns metrics into one verdict per profile budget.
"""

from edgesmith.evaluate.evaluator import Evaluation, Evaluator, Reference, run_dataset, task_metrics
from edgesmith.evaluate.judge import Verdict, accuracy_profile, gap_text, judge, overall, shortfall
from edgesmith.evaluate.latency import record_latency, time_against_float

__all__ = [
    "Evaluation",
    "Evaluator",
    "Reference",
    "Verdict",
    "accuracy_profile",
    "gap_text",
    "judge",
    "overall",
    "record_latency",
    "run_dataset",
    "shortfall",
    "task_metrics",
    "time_against_float",
]
