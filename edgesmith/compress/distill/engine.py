"""The recovery engine: train a compressed (or smaller) student against its frozen teacher.

One loop for every lossy pass — QAT, and the pruning and binarization passes to come — and for the
``distill`` pass: seeded batches from the recipe's data, a loss from ``RecoverConfig`` (Hinton KD mixed
with the task loss, TopKLD, feature hints with 1×1 adapters, BPKD for segmentation, MSE on logits, or
labels alone), a budget in steps, epochs or wall-clock minutes, evaluation on a held-out slice of the training data (never the
run's evaluation set) every ``eval_every`` steps, the best checkpoint kept and restored, early stopping
after ``patience`` evaluations without improvement, and a progress bar with the loss and the metric.

A pass hands its own knobs in: extra parameter groups (QAT's step sizes learn faster), a ``prepare``
callback after ``train()`` (QAT keeps batch norm statistics frozen), and its own model (with fake
quantizers, masks, ... still in place) as the student.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from edgesmith.compress.distill.bpkd import bpkd_loss
from edgesmith.compress.distill.hint import FeatureHint
from edgesmith.compress.distill.kd import hinton_loss, kd_kl
from edgesmith.compress.distill.topkld import topk_kld
from edgesmith.errors import ConfigError, InputError

Loss = Literal["kd", "topkld", "hint", "mse", "ce", "bpkd"]


@dataclass(frozen=True)
class RecoverConfig:
    """The ``recover:`` block of a pass (and the options of the ``distill`` pass)."""

    loss: Loss = "kd"
    alpha: float = 0.5  # weight of the distillation term; 1 - alpha goes to cross-entropy with the labels
    temperature: float = 4.0
    k: int = 5  # topkld: classes counted as explicit knowledge
    beta: float = 1.0  # topkld: weight of the implicit (tail) terms
    features: tuple[tuple[str, str], ...] = ()  # hint: (student layer, teacher layer) pairs
    hint_weight: float = 1.0
    steps: int | None = None
    epochs: float | None = None
    minutes: float | None = None
    lr: float = 1e-3
    batch_size: int = 64
    eval_every: int = 50
    patience: int | None = 6  # evaluations without improvement before stopping; None: never
    val_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.steps is not None and self.steps < 1) or (self.epochs is not None and self.epochs <= 0) or (self.minutes is not None and self.minutes <= 0):
            raise ValueError("a training budget of zero: steps must be >= 1, epochs and minutes > 0")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.loss == "hint" and not self.features:
            raise ValueError("loss hint needs features: [[student_layer, teacher_layer], ...]")
        if self.batch_size < 1 or self.eval_every < 1 or self.k < 1:
            raise ValueError("batch_size, eval_every and k must be >= 1")
        if not 0 <= self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in [0, 0.5), got {self.val_fraction}")

    @property
    def needs_labels(self) -> bool:
        return self.loss in ("ce", "bpkd") or self.alpha < 1.0

    def total_steps(self, n_train: int) -> int | None:
        if self.steps is not None:
            return self.steps
        if self.epochs is not None:
            return max(1, round(self.epochs * n_train / self.batch_size))
        return None if self.minutes is not None else 300


@dataclass
class FitResult:
    steps: int
    seconds: float
    best_metric: float | None
    best_step: int
    metric_name: str
    stopped: str
    history: list[dict[str, float]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # every step's training loss

    def summary(self) -> str:
        best = f"best held-out {self.metric_name} {self.best_metric:.2f} at step {self.best_step}" if self.best_metric is not None else "no held-out data"
        return f"{self.steps} steps in {self.seconds:.0f} s ({self.stopped}); {best}"


def labelled_tensors(data: Any, names: list[str]) -> tuple[Any, Any]:
    """All batches of a Dataset as (inputs, labels) tensors; inputs is a tensor for one input, else a tuple."""
    import torch

    xs = tuple(torch.from_numpy(np.concatenate([b.inputs[n] for b in data.batches])) for n in names)
    y = torch.from_numpy(np.concatenate([b.labels for b in data.batches])).long() if data.has_labels else None
    return (xs[0] if len(xs) == 1 else xs), y


def _take(x: Any, idx: Any) -> Any:
    return tuple(t[idx] for t in x) if isinstance(x, tuple) else x[idx]


def _len(x: Any) -> int:
    return len(x[0]) if isinstance(x, tuple) else len(x)


def _call(model: Any, x: Any) -> Any:
    out = model(*x) if isinstance(x, tuple) else model(x)
    return out[0] if isinstance(out, (tuple, list)) else out


def split_train_val(x: Any, y: Any, fraction: float, seed: int) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    import torch

    n = _len(x)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(n * fraction))
    val, train = order[:n_val], order[n_val:]
    pick = lambda idx: (_take(x, idx), None if y is None else y[idx])  # noqa: E731
    return pick(train), pick(val)


def predict(model: Any, x: Any, batch: int = 256) -> Any:
    import torch

    model.eval()
    with torch.no_grad():
        return torch.cat([_call(model, _take(x, slice(i, i + batch))) for i in range(0, _len(x), batch)])


def check_pair(student: Any, teacher: Any, x: Any) -> None:
    """Teacher and student must answer the same inputs with outputs of one shape."""
    import torch

    probe = _take(x, slice(0, 2))
    with torch.no_grad():
        try:
            s = _call(student.eval(), probe)
        except Exception as exc:
            raise InputError(
                f"the student cannot run the data the teacher takes: {str(exc).splitlines()[0][:200]}",
                hint="the student must accept the teacher's inputs (same names, shapes, dtypes)",
            ) from None
        t = _call(teacher.eval(), probe)
    if s.shape != t.shape:
        raise InputError(
            f"teacher and student outputs differ in shape: teacher {list(t.shape)}, student {list(s.shape)}",
            hint="the student's output layer must match the teacher's (e.g. the same number of classes)",
        )


def fit(
    student: Any,
    teacher: Any,
    data: Any,
    names: list[str],
    cfg: RecoverConfig,
    *,
    param_groups: list[dict] | None = None,
    prepare: Callable[[Any], None] | None = None,
    after_step: Callable[[Any, int], None] | None = None,
    best_from_step: int = 0,
    extra_loss: Callable[[Any], Any] | None = None,
    progress: bool = True,
    label: str = "distilling",
) -> FitResult:
    """Train ``student`` in place against the frozen ``teacher`` on ``data`` (an edgesmith Dataset).

    ``after_step(student, step)`` runs after every optimiser step, before evaluation: pruning passes keep
    their masks there (zeros stay zero) and TEDDY projects onto the ℓ0 ball. ``best_from_step``: only
    checkpoints from that step on may be kept as the best (a gradual schedule reaches its final sparsity
    there; an earlier, denser checkpoint would score better and be the wrong model). ``extra_loss(student)``
    is added to every step's loss (a pass's regulariser, e.g. binarize's MST penalty)."""
    import torch
    import torch.nn.functional as F

    if data is None or data.num_samples == 0:
        raise ConfigError("distillation needs training data", hint="add `data: {calibration: ...}` (the training inputs)")
    if cfg.needs_labels and not data.has_labels:
        raise InputError(
            f"loss {cfg.loss!r} with alpha {cfg.alpha:g} uses the labels, and the data {data.name} has none",
            hint="give labelled data, or distil from the teacher alone with alpha: 1",
        )
    x, y = labelled_tensors(data, names)
    check_pair(student, teacher, x)
    (xt, yt), (xv, yv) = split_train_val(x, y, cfg.val_fraction, cfg.seed) if cfg.val_fraction > 0 else ((x, y), (None, None))
    teacher = teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    hint = None
    if cfg.loss == "hint":
        hint = FeatureHint(student, teacher, [(str(p[0]), str(p[1])) for p in cfg.features])
        student.eval()
        with torch.no_grad():  # build the adapters from the feature widths
            _call(student, _take(xt, slice(0, 2)))
            _call(teacher, _take(xt, slice(0, 2)))
            hint.loss()
    torch.manual_seed(cfg.seed)
    groups = param_groups or [{"params": [p for p in student.parameters() if p.requires_grad], "lr": cfg.lr}]
    if hint is not None:
        groups = groups + [{"params": hint.parameters(), "lr": cfg.lr}]
    opt = torch.optim.Adam(groups)
    n = _len(xt)
    total = cfg.total_steps(n)
    gen = torch.Generator().manual_seed(cfg.seed)
    metric_name = "top1" if yv is not None else "teacher agreement"

    t_logits_val = predict(teacher, xv) if xv is not None and _len(xv) else None

    def evaluate() -> tuple[float, float] | None:
        """(held-out metric, held-out loss): top-1 against the labels (else agreement with the teacher),
        and cross-entropy (else KL to the teacher) to break ties between equal metrics."""
        if t_logits_val is None:
            return None
        out = predict(student, xv)
        target = yv if yv is not None else t_logits_val.argmax(1)
        metric = float((out.argmax(1) == target).float().mean()) * 100
        tie = float(F.cross_entropy(out, yv)) if yv is not None else float(kd_kl(out, t_logits_val, 1.0))
        return metric, tie

    def better(now: tuple[float, float] | None, ref: tuple[float, float] | None) -> bool:
        return now is not None and (ref is None or now[0] > ref[0] or (now[0] == ref[0] and now[1] < ref[1]))

    best_pair = evaluate() if best_from_step <= 0 else None
    best_step, best_state, bad, history = 0, copy.deepcopy(student.state_dict()) if best_from_step <= 0 else None, 0, []
    started, step, stopped, losses = time.time(), 0, "budget spent", []
    bar = _Progress(progress, label, total, cfg.minutes)
    try:
        while True:
            if total is not None and step >= total:
                break
            if cfg.minutes is not None and time.time() - started >= cfg.minutes * 60:
                stopped = "time budget spent"
                break
            student.train()
            if prepare is not None:
                prepare(student)
            idx = torch.randint(0, n, (min(cfg.batch_size, n),), generator=gen)
            xb = _take(xt, idx)
            s_out = _call(student, xb)
            with torch.no_grad():
                t_out = _call(teacher, xb)
            yb: Any = yt[idx] if yt is not None else None  # None only where the loss needs no labels (checked when read)
            if cfg.loss == "kd":
                loss = hinton_loss(s_out, t_out, yb, cfg.alpha, cfg.temperature)
            elif cfg.loss == "topkld":
                soft = topk_kld(s_out, t_out, min(cfg.k, s_out.shape[1]), cfg.beta, cfg.temperature)
                loss = soft if cfg.alpha >= 1 else (1 - cfg.alpha) * F.cross_entropy(s_out, yb) + cfg.alpha * soft
            elif cfg.loss == "mse":
                soft = F.mse_loss(s_out, t_out)
                loss = soft if cfg.alpha >= 1 else (1 - cfg.alpha) * F.cross_entropy(s_out, yb) + cfg.alpha * soft
            elif cfg.loss == "bpkd":  # segmentation: logits [N, C, H, W], labels [N, H, W]
                loss = bpkd_loss(s_out, t_out, yb, cfg.temperature)["total"]
            elif cfg.loss == "hint":
                kd = hinton_loss(s_out, t_out, yb, cfg.alpha, cfg.temperature)
                assert hint is not None  # built above for loss: hint
                loss = kd + cfg.hint_weight * hint.loss()
            else:
                loss = F.cross_entropy(s_out, yb)
            if extra_loss is not None:
                loss = loss + extra_loss(student)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if after_step is not None:
                with torch.no_grad():
                    after_step(student, step)
            losses.append(float(loss.detach()))
            bar.advance(step, losses[-1], best_pair[0] if best_pair else None)
            if step % cfg.eval_every == 0 or (total is not None and step == total):
                pair = evaluate()
                history.append({"step": step, "loss": round(losses[-1], 5), **({metric_name: pair[0], "held_out_loss": round(pair[1], 5)} if pair else {})})
                if step < best_from_step:
                    pass
                elif better(pair, best_pair):
                    best_pair, best_step, best_state, bad = pair, step, copy.deepcopy(student.state_dict()), 0
                elif pair is not None:
                    bad += 1
                    if cfg.patience is not None and bad >= cfg.patience:
                        stopped = f"early stop: no improvement in {cfg.patience} evaluations"
                        break
    finally:
        bar.close()
        if hint is not None:
            hint.remove()
    if best_pair is not None and best_state is not None:
        student.load_state_dict(best_state)  # the best checkpoint, not the last
    student.eval()
    return FitResult(step, time.time() - started, best_pair[0] if best_pair else None, best_step, metric_name, stopped, history, losses)


def recover(model: Any, teacher: Any, ctx: Any, rec: RecoverConfig, label: str, after_step: Any = None, best_from_step: int = 0, extra_loss: Any = None) -> Any:
    """A pass's ``recover:`` step: train the compressed ``model`` against its ``teacher`` on the run's calibration data
    (labels checked first, with a hint); returns the FitResult."""
    data = ctx.calibration
    if data is None:
        raise ConfigError(
            f"{label}: recover trains on data, and the run has none",
            hint="add `data: {calibration: ...}` (labelled, or `recover: {alpha: 1}` to distil from the dense model alone)",
        )
    if rec.needs_labels and not data.has_labels:
        raise ConfigError(
            f"{label}: recover with alpha {rec.alpha:g} uses labels, and the calibration data has none",
            hint="give labelled calibration data, or `recover: {alpha: 1}` to distil from the dense model alone",
        )
    names = [s.name for s in ctx.input_specs]
    return fit(model, teacher, data, names, rec, after_step=after_step, best_from_step=best_from_step, extra_loss=extra_loss, label=label)


def train_soft(model: Any, x: Any, targets: Any, epochs: float, lr: float, batch_size: int, seed: int) -> None:
    """Fit ``model`` to soft class targets (cross-entropy with a distribution) for ``epochs``: self-distillation's step."""
    import torch

    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = _len(x)
    gen = torch.Generator().manual_seed(seed)
    steps = max(1, round(epochs * n / batch_size))
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        logp = torch.log_softmax(_call(model, _take(x, idx)), 1)
        loss = -(targets[idx] * logp).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


class _Progress:
    """A rich progress bar on stderr with the current loss and held-out metric (quiet when not a terminal)."""

    def __init__(self, enabled: bool, label: str, total: int | None, minutes: float | None):
        self.bar = None

        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"), TimeElapsedColumn(), transient=True)
            self.task = self.bar.add_task(label, total=total, status="")
            self.bar.start()

    def advance(self, step: int, loss: float, metric: float | None) -> None:
        if self.bar is not None and (step % 5 == 0):
            self.bar.update(self.task, completed=step, status=f"loss {loss:.4f}" + (f" · held-out {metric:.2f}" if metric is not None else ""))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
