"""The recovery engine: train a compressed (or smaller) student against its frozen teacher.

One loop for every lossy pass — QAT, and the pruning and binarization passes to come — and for the
``distill`` pass: seeded batches from the recipe's data, a loss from ``RecoverConfig`` (Hinton KD mixed
with the task loss, TopKLD, feature hints with 1×1 adapters, BPKD for segmentation, MSE on logits, or
labels alone), a budget in steps, epochs or wall-clock minutes, evaluation on a held-out slice of the training data (never the
run's evaluation set) every ``eval_every`` steps, the best checkpoint kept and restored, on a plateau of
``patience`` evaluations the rate dropped 10x from the best checkpoint (``plateau_drops`` times) before an
early stop, and a progress bar with the loss and the metric.

A pass hands its own knobs in: extra parameter groups (QAT's step sizes learn faster), a ``prepare``
callback after ``train()`` (QAT keeps batch norm statistics frozen), and its own model (with fake
quantizers, masks, ... still in place) as the student.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from edgesmith.compress.distill.augment import augment
from edgesmith.compress.distill.bpkd import bpkd_loss
from edgesmith.compress.distill.checkpoint import Checkpoint
from edgesmith.compress.distill.hint import FeatureHint
from edgesmith.compress.distill.progress import Progress
from edgesmith.compress.distill.targets import HeldOut, check_labels, label_loss, output_task, soft_loss
from edgesmith.compress.distill.topkld import topk_kld
from edgesmith.errors import ConfigError, InputError
from edgesmith.terminal import say

Loss = Literal["auto", "kd", "topkld", "hint", "mse", "ce", "bpkd"]


@dataclass(frozen=True)
class RecoverConfig:
    """The ``recover:`` block of a pass (and the options of the ``distill`` pass)."""

    loss: Loss = "auto"  # auto and kd: the term that fits the output (targets.py); mse, topkld, hint, ce, bpkd as named
    alpha: float = 0.5  # weight of the distillation term; 1 - alpha goes to the labels' task term when the data has labels
    temperature: float = 4.0
    k: int = 5  # topkld: classes counted as explicit knowledge
    beta: float = 1.0  # topkld: weight of the implicit (tail) terms
    features: tuple[tuple[str, str], ...] = ()  # hint: (student layer, teacher layer) pairs
    hint_weight: float = 1.0
    steps: int | None = None
    epochs: float | None = None
    minutes: float | None = None
    lr: float = 1e-3
    schedule: Literal["constant", "cosine"] = "constant"  # cosine: decay to 5% after a 20-step warm-up, over the steps or the time budget
    batch_size: int = 64
    eval_every: int | None = None  # None: every epoch, at most 50 steps apart, at least 10 times a run (and 12 times a time budget)
    patience: int | None = 6  # evaluations without improvement before stopping; None: never
    plateau_drops: int = 2  # on such a plateau the rate first drops 10x from the best checkpoint, this many times
    target: float | None = None  # stop early once the held-out score reaches this (e.g. 99: decisions kept, percent)
    augment: bool | None = None  # None: on when training from the teacher alone (no labels) on image inputs
    val_fraction: float = 0.1  # held out, at least min(128, a quarter of the data) samples
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
        if self.batch_size < 1 or (self.eval_every is not None and self.eval_every < 1) or self.k < 1:
            raise ValueError("batch_size, eval_every and k must be >= 1")
        if self.plateau_drops < 0:
            raise ValueError(f"plateau_drops must be >= 0, got {self.plateau_drops}")
        if not 0 <= self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in [0, 0.5), got {self.val_fraction}")

    @property
    def needs_labels(self) -> bool:
        """Whether the loss cannot train without labels (alpha < 1 uses them when present, distils alone when not)."""
        return self.loss in ("ce", "bpkd")

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
    start_metric: float | None = None  # the held-out score before training
    recovered: bool | None = None  # a trained checkpoint beat the untrained start (None: no held-out data, or a gradual schedule)
    task: str = "classes"

    def summary(self) -> str:
        best = f"best held-out {self.metric_name} {self.best_metric:.2f} at step {self.best_step}" if self.best_metric is not None else "no held-out data"
        start = f" (from {self.start_metric:.2f})" if self.start_metric is not None else ""
        flag = "; DID NOT RECOVER" if self.recovered is False else ""
        return f"{self.steps} steps in {self.seconds:.0f} s ({self.stopped}); {best}{start}{flag}"


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
    n_val = max(int(round(n * fraction)), min(128, n // 4)) if fraction > 0 else 0
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


class Diverged(Exception):
    pass


def _check_loss(loss: float, first: list[float], step: int) -> None:
    """NaN, infinity, or a loss 1000x its first steps' median: the run diverged."""
    if loss != loss or loss in (float("inf"), float("-inf")):
        raise Diverged(f"the loss became {loss} at step {step}")
    if len(first) >= 10 and loss > 1000 * max(float(np.median(first[:10])), 1e-6):
        raise Diverged(f"the loss exploded to {loss:.3g} at step {step} (from {float(np.median(first[:10])):.3g})")


def _lr_factor(cfg: RecoverConfig, step: int, total: int | None, elapsed: float) -> float:
    """Cosine decay to 5% of the rate after a short warm-up, over the steps or the wall-time budget."""
    if cfg.schedule == "constant":
        return 1.0
    share = step / total if total else elapsed / (cfg.minutes * 60) if cfg.minutes else 0.0
    warm = min(1.0, (step + 1) / 20)
    return warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, share))))


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
    checkpoint: Checkpoint | None = None,
) -> FitResult:
    """Train ``student`` in place against the frozen ``teacher`` on ``data`` (an edgesmith Dataset).

    The loss fits the teacher's output (``targets.py``: class scores, per-position sequence scores, dense
    maps); labels, when the data has them and ``alpha < 1``, add the task term, and without them the student
    learns from the teacher alone. ``after_step(student, step)`` runs after every optimiser step, before
    evaluation: pruning passes keep their masks there (zeros stay zero) and TEDDY projects onto the ℓ0 ball.
    ``best_from_step``: only checkpoints from that step on may be kept as the best (a gradual schedule reaches
    its final sparsity there). ``extra_loss(student)`` is added to every step's loss (a pass's regulariser,
    e.g. binarize's MST penalty). ``checkpoint``: where the state goes every epoch (and on an interrupt) and
    what ``--resume`` continues from."""
    import torch

    if data is None or data.num_samples == 0:
        raise ConfigError("distillation needs training data", hint="add `data: {calibration: ...}` (the training inputs)")
    if data.num_samples < 2:
        raise InputError(
            f"the training data {data.name} has {data.num_samples} sample: training needs at least 2 (better hundreds)", hint="give more calibration inputs"
        )
    if not any(p.requires_grad for p in student.parameters()) and not param_groups:
        raise InputError(
            "the model has no trainable parameters: there is nothing to train", hint="leave the training pass out, or unfreeze the model's parameters"
        )
    if cfg.loss in ("ce", "bpkd") and not data.has_labels:
        raise InputError(
            f"loss {cfg.loss!r} trains on labels, and the data {data.name} has none",
            hint="give labelled data, or use loss: auto to distil from the teacher alone",
        )
    x, y = labelled_tensors(data, names)
    check_pair(student, teacher, x)
    teacher = teacher.eval()
    with torch.no_grad():
        probe = _call(teacher, _take(x, slice(0, 2)))
    task = output_task(probe)
    use_labels = y is not None and (cfg.alpha < 1.0 or cfg.loss in ("ce", "bpkd"))
    if use_labels:
        check_labels(task, y, tuple(probe.shape))
    (xt, yt), (xv, yv) = split_train_val(x, y if use_labels else None, cfg.val_fraction, cfg.seed)
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
    base_lrs = [g["lr"] for g in opt.param_groups]
    n = _len(xt)
    total = cfg.total_steps(n)
    per_epoch = max(1, -(-n // cfg.batch_size))
    eval_every = cfg.eval_every or max(1, min(per_epoch, 50, (total or 10**9) // 10 or 1))
    eval_every_s = cfg.minutes * 60 / 12 if cfg.minutes else None
    augmenting = cfg.augment if cfg.augment is not None else not use_labels
    gen = torch.Generator().manual_seed(cfg.seed)
    held = HeldOut(task, use_labels)
    t_val = predict(teacher, xv) if xv is not None and _len(xv) else None

    def evaluate() -> tuple[float, float] | None:
        """(held-out score, tie-break loss): see targets.HeldOut."""
        return None if t_val is None else held.score(predict(student, xv), t_val, yv)

    def better(now: tuple[float, float] | None, ref: tuple[float, float] | None) -> bool:
        return now is not None and (ref is None or now[0] > ref[0] or (now[0] == ref[0] and now[1] < ref[1]))

    start_pair = evaluate()
    best_pair = start_pair if best_from_step <= 0 else None
    best_step, best_state, bad, history = 0, copy.deepcopy(student.state_dict()) if best_from_step <= 0 else None, 0, []
    step, stopped, losses, done_before, drops = 0, "budget spent", [], 0.0, 0
    saved = checkpoint.load(student) if checkpoint is not None else None
    if saved is not None:
        student.load_state_dict(saved["student"])
        opt.load_state_dict(saved["optimizer"])
        gen.set_state(saved["generator"])
        step, done_before, losses, history, bad = int(saved["step"]), float(saved["seconds"]), list(saved["losses"]), list(saved["history"]), int(saved["bad"])
        best_step, best_state = int(saved["best_step"]), saved["best"]
        best_pair = (float(saved["best_pair"][0]), float(saved["best_pair"][1])) if saved["best_pair"] else None
        drops = int(saved.get("drops", 0))
        say(f"{label}: resuming from {checkpoint.path} at step {step}", err=True)
    started = time.time() - done_before
    last_eval_t = time.time()

    def state() -> dict[str, Any]:
        return {
            "student": student.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(), "step": step,
            "seconds": time.time() - started, "losses": losses, "history": history, "bad": bad, "best_step": best_step,
            "best": best_state if best_state is not None else student.state_dict(), "best_pair": list(best_pair) if best_pair else [],
            "drops": drops,
        }  # fmt: skip

    bar = Progress(progress, label, total, cfg.minutes * 60 if cfg.minutes else None)
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
            for g, lr in zip(opt.param_groups, base_lrs):
                g["lr"] = lr * _lr_factor(cfg, step, total, time.time() - started) * 0.1**drops
            idx = torch.randint(0, n, (min(cfg.batch_size, n),), generator=gen)
            xb = _take(xt, idx)
            if augmenting:
                xb = augment(xb, gen)
            try:
                s_out = _call(student, xb)
                with torch.no_grad():
                    t_out = _call(teacher, xb)
                yb: Any = yt[idx] if yt is not None else None
                loss = _loss(cfg, task, s_out, t_out, yb, hint)
                if extra_loss is not None:
                    loss = loss + extra_loss(student)
                opt.zero_grad()
                loss.backward()
                opt.step()
            except (RuntimeError, MemoryError) as exc:
                if isinstance(exc, MemoryError) or "memory" in str(exc).lower():
                    raise InputError(
                        f"{label}: training ran out of memory at batch size {cfg.batch_size}",
                        hint=f"lower the batch size (recover: {{batch_size: {max(1, cfg.batch_size // 2)}}}); the best checkpoint so far is in the run's checkpoints",
                    ) from None
                raise
            step += 1
            losses.append(float(loss.detach()))
            if after_step is not None:
                with torch.no_grad():
                    after_step(student, step)
            _check_loss(losses[-1], losses, step)
            last = (total is not None and step >= total) or (cfg.minutes is not None and time.time() - started >= cfg.minutes * 60)
            due = step % eval_every == 0 or (eval_every_s is not None and time.time() - last_eval_t >= eval_every_s)
            pair = None
            if due or last:
                last_eval_t = time.time()
                pair = evaluate()
                history.append({"step": step, "loss": round(losses[-1], 5), **({held.name: pair[0], "held_out_loss": round(pair[1], 5)} if pair else {})})
                if step < best_from_step:
                    pass
                elif better(pair, best_pair):
                    best_pair, best_step, best_state, bad = pair, step, copy.deepcopy(student.state_dict()), 0
                elif pair is not None:
                    bad += 1
            bar.advance(step, losses[-1], pair[0] if pair else (best_pair[0] if best_pair else None), held.name, evaluated=pair is not None)
            if checkpoint is not None and (step % per_epoch == 0 or last):
                checkpoint.save(state())
            if pair is not None and cfg.target is not None and pair[0] >= cfg.target and step >= best_from_step:
                stopped = f"held-out {held.name} back to {pair[0]:.2f} (target {cfg.target:g})"
                break
            if cfg.patience is not None and bad >= cfg.patience and drops < cfg.plateau_drops and best_state is not None:
                # NOTE: a plateau at a high rate is usually noise around a better point, not the end: on the
                # pruned EasyOCR recognizer the run stopped at 551 s of a 20-min budget with 75% of lines read alike
                drops, bad = drops + 1, 0
                student.load_state_dict(best_state)
                say(
                    f"{label}: no improvement in {cfg.patience} evaluations: from the best checkpoint (step {best_step}) at 1/{10**drops} of the rate",
                    err=True,
                )
            elif cfg.patience is not None and bad >= cfg.patience:
                stopped = f"early stop: no improvement in {cfg.patience} evaluations" + (f" ({drops} rate drops)" if drops else "")
                break
    except Diverged as exc:
        stopped = f"diverged: {exc}; the best checkpoint (step {best_step}) is kept"
        say(f"{label}: {stopped}", err=True)
    except KeyboardInterrupt:
        if checkpoint is not None and step > 0:
            checkpoint.save(state())
            say(f"{label}: interrupted at step {step}; checkpoint saved to {checkpoint.path} (rerun with --resume to continue)", err=True)
        raise
    finally:
        bar.close()
        if hint is not None:
            hint.remove()
    if best_pair is not None and best_state is not None:
        student.load_state_dict(best_state)  # the best checkpoint, not the last
    student.eval()
    start = start_pair[0] if start_pair else None
    # NOTE: a gradual schedule's step 0 is the uncompressed model: no start to compare with
    recovered = (
        None if best_pair is None or start is None or best_from_step > 0 else best_step > 0
    )  # a trained checkpoint beat the start (score, or held-out loss at an equal score)
    return FitResult(step, time.time() - started, best_pair[0] if best_pair else None, best_step, held.name, stopped, history, losses, start, recovered, task)


def _loss(cfg: RecoverConfig, task: str, s_out: Any, t_out: Any, yb: Any, hint: Any) -> Any:
    """One step's loss: the configured distillation term toward the teacher, plus the labels' task term when used."""
    import torch.nn.functional as F

    if cfg.loss == "ce":
        return label_loss(task, s_out, yb)  # type: ignore[arg-type]
    if cfg.loss == "bpkd":  # segmentation: logits [N, C, H, W], labels [N, H, W]
        return bpkd_loss(s_out, t_out, yb, cfg.temperature)["total"]
    if cfg.loss == "topkld" and task == "classes":
        soft = topk_kld(s_out, t_out, min(cfg.k, s_out.shape[1]), cfg.beta, cfg.temperature)
    elif cfg.loss == "mse":
        soft = F.mse_loss(s_out, t_out)
    else:  # auto, kd, hint (and topkld on a non-class output): the term that fits the output
        soft = soft_loss(task, s_out, t_out, cfg.temperature if task == "classes" else min(cfg.temperature, 2.0))  # type: ignore[arg-type]
    loss = soft if yb is None else (1 - cfg.alpha) * label_loss(task, s_out, yb) + cfg.alpha * soft  # type: ignore[arg-type]
    if hint is not None:
        loss = loss + cfg.hint_weight * hint.loss()
    return loss


def refresh_batchnorm(model: Any, data: Any, names: list[str], batches: int = 20, batch_size: int = 64) -> int:
    """Re-estimate every batch norm's running statistics on the data (after pruning changed what reaches
    them); returns how many layers were refreshed. Weights are untouched."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns or data is None or data.num_samples == 0:
        return 0
    x, _ = labelled_tensors(data, names)
    saved = [(m.momentum, m.training) for m in bns]
    was = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    model.eval()
    for m in bns:
        m.train()
    with torch.no_grad():
        n = _len(x)
        for i in range(0, min(n, batches * batch_size), batch_size):
            _call(model, _take(x, slice(i, i + batch_size)))
    for m, (mom, _) in zip(bns, saved):
        m.momentum = mom
    model.train(was)
    return len(bns)


def recover(model: Any, teacher: Any, ctx: Any, rec: RecoverConfig, label: str, after_step: Any = None, best_from_step: int = 0, extra_loss: Any = None) -> Any:
    """A pass's ``recover:`` step: train the compressed ``model`` against its ``teacher`` on the run's calibration
    data (with its labels when it has them and alpha < 1, from the teacher alone otherwise); returns the FitResult,
    and says plainly in the run's notes when the recovery did not recover."""
    data = ctx.calibration
    if data is None:
        raise ConfigError(
            f"{label}: recover trains on data, and the run has none",
            hint="add `data: {calibration: ...}` (unlabelled inputs are enough: the original model is the teacher)",
        )
    names = [s.name for s in ctx.input_specs]
    points = getattr(ctx, "checkpoints", None)
    fitted = fit(
        model, teacher, data, names, rec, after_step=after_step, best_from_step=best_from_step, extra_loss=extra_loss, label=label,
        checkpoint=points.for_pass(label) if points is not None else None,
    )  # fmt: skip
    if not data.has_labels and rec.alpha < 1:
        ctx.note(f"{label}: the training data has no labels: recovered from the original model alone (distillation)")
    if fitted.recovered is False:
        ctx.note(
            f"{label}: RECOVERY DID NOT RECOVER: held-out {fitted.metric_name} {fitted.best_metric:.2f} is no better than before training "
            f"({fitted.start_metric:.2f}); the model kept is the untrained one — give more data, more time (--train-time) or compress less"
        )
    return fitted


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
