"""optimize as the default preset of ``edgesmith search``.

Post-training only, optimize's candidates are the preset's space (search.py in this package: every INT8
setting the model's structure calls for, on every runtime of the device, timed in one race). Given a
training budget (``--train-budget EPOCHS`` and/or ``--train-time 20m``), training passes join — on
labelled or unlabelled data: the preset runs ``edgesmith.search`` over

    first:  prune_channels removing 30/50/70% of the MACs, per-layer ratios from sensitivity (and half the hidden
            units of recurrent layers) | binarize |
            4-bit QAT | none   (each recovered through the distillation engine for the budget: from the
            original model alone on unlabelled data, with the labels too when the data has them)
    then:   the post-training pick's INT8 setting, or not

on the target, and keeps the search's best trial when it is faster than the post-training pick with a
speed-up interval above FP32's and within every budget; otherwise the post-training pick stands — an
un-recovered model is never shipped, it fails the budgets. With labels, the training search judges the
task metric only (its profile drops the fidelity budgets): a network retrained with labels keeps its
decisions but not the float model's logits; without labels the fidelity budgets are what it is judged on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edgesmith import pipeline
from edgesmith.errors import ConfigError
from edgesmith.metrics import FIDELITY_METRICS
from edgesmith.model_io import model_kind
from edgesmith.outputs import atomic_write_text
from edgesmith.search import Settings, search

PRUNE_RATIOS = [0.3, 0.5, 0.7]
# half the hidden units of each LSTM/GRU/RNN go too (none in a model without them): EasyOCR's recognizer at 65% of
# the MACs + half its LSTM units ran 2.17x (ORT) at +0.67 CER after 20 min of label-free recovery, 1.79x at +1.15 with
# the LSTMs whole at 75% (BENCHMARKS.md)
RECURRENT_RATIO = 0.5


TRAINED_TRIALS = len(PRUNE_RATIOS) + 2  # each pruning ratio, binarization, 4-bit QAT (INT8 on/off share one training)


def space(epochs: int | None, int8: dict | None, labelled: bool = True, minutes: float | None = None) -> list[dict]:
    """The training search's passes; ``minutes`` is the whole search's training time, shared by its trials."""
    budget = {k: v for k, v in (("epochs", epochs), ("minutes", minutes / TRAINED_TRIALS if minutes else None)) if v}
    recover = {"loss": "auto", "alpha": 0.5 if labelled else 1.0, "temperature": 4.0, **budget, "patience": 10}
    qat = (
        {"type": "qat", "weight_bits": 4, "recover": {**recover, "lr": 1e-4}}
        if not labelled or minutes
        else {"type": "qat", "weight_bits": 4, "steps": max(100, 10 * (epochs or 1))}
    )
    first = [
        {
            "type": "prune_channels",
            "ratio": {"search": PRUNE_RATIOS},
            "allocation": "sensitivity",
            "recurrent_ratio": RECURRENT_RATIO,
            "recover": {**recover, "schedule": "cosine"},
        },
        {"type": "binarize", "recover": recover},
        qat,
        None,
    ]
    passes: list[dict] = [{"search": first}]
    if int8 is not None:
        passes.append({**int8, "enabled": {"search": [True, False]}})
    return passes


def task_profile(profile: Any, folder: Path, task_only: bool = True) -> Path:
    """The target's profile without its fidelity budgets (cosine, SQNR, output fidelity, decision agreement),
    written to ``folder``: trials that retrain are judged on the task metric against labels (``task_only``
    False keeps them: a profile of another runtime, judged as the target is)."""

    task = profile.model_copy(update={"budgets": [g for g in profile.budgets if not task_only or g.metric not in FIDELITY_METRICS]})
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / "target.profile.yaml").absolute()
    atomic_write_text(path, yaml.safe_dump(task.model_dump(mode="json"), sort_keys=False))
    return path


def check_trainable(recipe: Any, base_dir: Path, specs: list) -> bool:
    """A training budget needs a PyTorch model and training data (labels optional); returns whether it has labels."""

    if model_kind(recipe.model.source) == "onnx":
        raise ConfigError(
            "a training budget needs a PyTorch model (passes that train work on torch modules)",
            hint="give package.module:factory or a .pt2 program, or leave --train-budget/--train-time out",
        )
    calib, _ = pipeline.load_data(recipe, specs, base_dir, True)
    if calib is None or calib.num_samples < 2:
        raise ConfigError("a training budget needs training data (unlabelled inputs are enough)", hint="give --data with a few hundred inputs")
    return bool(calib.has_labels)


def run(recipe: Any, base_dir: Path, out: Path, passes: list, reporter: Any, trust_checkpoint: bool) -> Any:
    """The search over ``passes`` (the recipe's torch passes + ``space``) into ``out``; returns its SearchResult."""

    data = recipe.model_dump(mode="json")
    data.pop("optimize", None)
    if (data.get("data") or {}).get("calibration"):
        data["data"]["calibration"]["samples"] = None  # training reads the whole calibration split, not the calibration cap
    data["passes"] = passes
    data["targets"] = [t.model_dump(mode="json", exclude_none=True) for t in recipe.targets]
    return search(data, base_dir, out, settings=Settings(force=True, trust_checkpoint=trust_checkpoint, run_best=False), reporter=reporter)


def pick(res: Any, ptq_speedup: float | None) -> tuple[Any, str]:
    """The search's best when it beats the post-training pick (or FP32 when that is the pick), else None."""
    best = res.best
    if best is None:
        return None, "no trial of the training search met every budget" + (
            ": closest " + "; ".join(f"#{t.number} ({t.label}): {'; '.join(t.gaps)}" for t in res.closest) if res.closest else ""
        )
    base = ptq_speedup or 1.0
    if best.low is None or best.low <= 1.0:
        return None, f"the training search's best (#{best.number}, {best.label}) is not surely faster than FP32 ({best.speedup:.2f}x)"
    if best.speedup <= base:
        return (
            None,
            f"the training search's best (#{best.number}, {best.label}, {best.speedup:.2f}x FP32) is not faster than the post-training pick ({base:.2f}x)",
        )
    return best, (
        f"the training search's best (#{best.number}, {best.label}): {best.speedup:.2f}x FP32 "
        f"(interval {best.low:.2f}-{best.high:.2f}) against {base:.2f}x for the post-training pick, within every budget"
    )
