"""Self-distillation with ground-truth weighting (docs/algorithms.md §8; authors' code Kennethborup/self_distillation).

Step t refits the model (from scratch) on ỹ_t = α·y + (1 − α)·ŷ_{t−1}, its own previous predictions
mixed with the labels; the incoming trained model is step 0. For kernel ridge regression (A = K(K + λI)⁻¹) the iterates converge to ridge regression with
regularisation λ/α. For deep nets the step's α is estimated instead of grid-searched: fit the step's
student at α = 0 and α = 1 (outputs f₀, f₁ on held-out data), then

    α* = ⟨f₁ − f₀, y_val − f₀⟩ / ‖f₁ − f₀‖²   clipped to [0, 1]

(the α whose interpolation f₀ + α(f₁ − f₀) is closest to the held-out labels).

``kernel_ridge_steps`` reproduces the paper's 11-point example exactly; ``self_distill`` is the pass:
it retrains a copy of the model for ``rounds`` steps on the soft targets ỹ_t (classification: one-hot
labels and the previous round's softmax), with α* per round from two cheap fits.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgesmith.compress.distill.engine import labelled_tensors, predict, split_train_val, train_soft
from edgesmith.compress.registry import PassInfo
from edgesmith.errors import ConfigError

# the authors' toy example (docs/algorithms.md §8)
TOY_X = np.round(np.arange(11) * 0.1, 10)
TOY_Y = np.array(
    [
        0.38476636465198066,
        1.2333967683416893,
        1.33232242218057,
        0.6920159488889518,
        -0.29756145531871736,
        -0.24189291901377769,
        -0.7964485769175675,
        -0.9616480167034174,
        -0.49672509509916934,
        -0.3469066003991437,
        0.5589512650600734,
    ]
)


def rbf(a: np.ndarray, b: np.ndarray, gamma: float = 80.0) -> np.ndarray:
    return np.exp(-gamma * (a[:, None] - b[None, :]) ** 2)


def kernel_ridge_steps(
    alpha: float, steps: int = 6, x: np.ndarray = TOY_X, y: np.ndarray = TOY_Y, lam: float = 0.2, gamma: float = 80.0, grid: np.ndarray | None = None
) -> tuple[list[float], float, list[np.ndarray]]:
    """Errors (mean squared distance to sin(2πx) on the grid) of self-distillation steps 1..``steps``,
    the error of the closed-form limit, and the grid predictions of each step."""
    grid = np.round(np.arange(101) * 0.01, 10) if grid is None else grid
    K = rbf(x, x, gamma)
    inv = np.linalg.inv(K + lam * np.eye(len(x)))
    A, Kg = K @ inv, rbf(grid, x, gamma) @ inv
    truth = np.sin(2 * np.pi * grid)
    prev, errors, preds = y.copy(), [], []
    for _ in range(steps):
        target = alpha * y + (1.0 - alpha) * prev
        pred = Kg @ target
        preds.append(pred)
        errors.append(float(np.mean((pred - truth) ** 2)))
        prev = A @ target
    limit = alpha * rbf(grid, x, gamma) @ np.linalg.solve(alpha * K + lam * np.eye(len(x)), y)
    return errors, float(np.mean((limit - truth) ** 2)), preds


def alpha_star(f0: np.ndarray, f1: np.ndarray, y_val: np.ndarray) -> float:
    """The closed-form α from the two fits (α = 0: only the previous predictions; α = 1: only labels)."""
    d = (np.asarray(f1, np.float64) - np.asarray(f0, np.float64)).ravel()
    denom = float(d @ d)
    if denom == 0.0:
        return 1.0  # the two fits agree: the labels cost nothing
    return float(np.clip(d @ (np.asarray(y_val, np.float64) - np.asarray(f0, np.float64)).ravel() / denom, 0.0, 1.0))


@dataclass(frozen=True)
class SelfDistillConfig:
    rounds: int = 2
    epochs: float = 20.0  # per fit of a step's student (from scratch)
    probe_epochs: float | None = None  # the α=0 / α=1 fits (default: epochs / 2)
    alpha: float | None = None  # fixed α for every round instead of α* (e.g. a grid search)
    lr: float = 3e-3
    batch_size: int = 64
    val_fraction: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.epochs <= 0 or (self.probe_epochs is not None and self.probe_epochs <= 0):
            raise ValueError("a training budget of zero: rounds >= 1 and epochs > 0")
        if self.alpha is not None and not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if not 0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")


def self_distill(model: Any, cfg: SelfDistillConfig, ctx: Any) -> Any:
    """The pass: ``rounds`` of self-distillation on the calibration data's labels; returns the last round's model."""

    import torch

    data = ctx.calibration
    if data is None or not data.has_labels:
        raise ConfigError(
            "self_distill mixes the labels into its targets and needs labelled data",
            hint="give labelled calibration data (npz key `labels`), e.g. `data: {calibration: {source: digits}}`",
        )
    names = [s.name for s in ctx.input_specs]
    x, y = labelled_tensors(data, names)
    (xt, yt), (xv, yv) = split_train_val(x, y, cfg.val_fraction, cfg.seed)
    num_classes = int(_predict(model, xt[:2]).shape[1])
    onehot_t = torch.nn.functional.one_hot(yt, num_classes).float()
    onehot_v = torch.nn.functional.one_hot(yv, num_classes).float().numpy()

    def fresh(seed: int) -> Any:  # each step refits from scratch, as in the paper
        torch.manual_seed(seed)
        m = copy.deepcopy(model)
        for mod in m.modules():
            if hasattr(mod, "reset_parameters"):
                mod.reset_parameters()
        return m

    prev_t = torch.softmax(_predict(model, xt), 1)  # ŷ₀: the incoming (trained) model's predictions
    history, started = [], time.time()
    probe = cfg.probe_epochs or cfg.epochs / 2
    for r in range(cfg.rounds):
        if cfg.alpha is None:
            fits = {}
            for a in (0.0, 1.0):
                m = fresh(cfg.seed + r)
                train_soft(m, xt, a * onehot_t + (1 - a) * prev_t, probe, cfg.lr, cfg.batch_size, cfg.seed + r)
                fits[a] = torch.softmax(_predict(m, xv), 1).numpy()
            alpha = alpha_star(fits[0.0], fits[1.0], onehot_v)
        else:
            alpha = cfg.alpha
        student = fresh(cfg.seed + r)
        train_soft(student, xt, alpha * onehot_t + (1 - alpha) * prev_t, cfg.epochs, cfg.lr, cfg.batch_size, cfg.seed + r)
        val_acc = float((_predict(student, xv).argmax(1) == yv).float().mean()) * 100
        history.append({"round": r + 1, "alpha": round(alpha, 4), "val_top1": round(val_acc, 2)})
        prev_t = torch.softmax(_predict(student, xt), 1)
        model = student
    ctx.details["self_distill"] = {
        "rounds": history,
        "seconds": round(time.time() - started, 1),
        "alpha": "fixed" if cfg.alpha is not None else "closed-form per round (§8)",
    }
    ctx.note(
        "self_distill: "
        + "; ".join(f"round {h['round']} alpha {h['alpha']:.3f} val top-1 {h['val_top1']:.2f}" for h in history)
        + f" ({time.time() - started:.0f} s)"
    )
    return model


def _predict(model: Any, x: Any) -> Any:

    return predict(model, x)


PASS = PassInfo(
    "self_distill",
    "torch",
    SelfDistillConfig,
    self_distill,
    "self-distillation rounds with ground-truth weighting, alpha per round in closed form (§8)",
    needs_calibration=True,
)
