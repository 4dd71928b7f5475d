"""N2N — shrink a teacher into a student with reinforcement learning (docs/algorithms.md §10; authors' code anubhavashok/N2N).

1. Each layer of the teacher is encoded as [type, kernel, stride, out_channels, padding]. A bidirectional
   LSTM reads the sequence and samples keep/remove per layer; a second LSTM reads the kept layers and
   samples a width scale for each.
2. Each sampled student is built, trained briefly on the teacher's logits (MSE, through the recovery
   engine; batch-norm statistics then recomputed over the training data) and rewarded R = (A / A_teacher)·C·(2 − C), C = 1 − params/params_teacher; −1 for an
   architecture that cannot be built.
3. REINFORCE with a moving-average baseline, ``rollouts`` students per epoch.

The search space here is the ResNet family the zoo's residual models come from (a stem convolution,
basic blocks with projection shortcuts, global pooling, a linear head): any subset of blocks with any
widths still builds, because each block projects its shortcut when its width or stride changes. The
stem always stays; removing every block is the invalid architecture. The ``finalists`` highest-reward
students at least ``min_compression`` times smaller are then distilled for longer (Hinton KD); the
smallest within ``max_drop`` points of the teacher on held-out training data is returned (else the most
accurate), and its architecture goes into the run's report.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

from edgesmith.compress.distill.engine import RecoverConfig, fit, labelled_tensors, predict, split_train_val
from edgesmith.compress.registry import PassInfo
from edgesmith.errors import ConfigError

SCALES = (0.25, 0.5, 0.75, 1.0)


def reward(accuracy_ratio: float, compression: float) -> float:
    """R = (A/A_teacher)·C·(2 − C): R_c(0) = 0, R_c(1) = 1, increasing and concave in C."""
    return float(accuracy_ratio * compression * (2.0 - compression))


@dataclass
class Arch:
    """A ResNet-family architecture: stem width, then (out_channels, stride) per basic block."""

    in_channels: int
    stem: int
    blocks: list[tuple[int, int]]
    num_classes: int

    def layers(self) -> list[list[int]]:
        """[type, kernel, stride, out_channels, padding] per layer (type 0: conv, 1: basic block)."""
        return [[0, 3, 1, self.stem, 1]] + [[1, 3, s, c, 1] for c, s in self.blocks]

    def build(self) -> Any:
        import torch.nn as nn

        from edgesmith.zoo.resnet import basic_block

        if not self.blocks or self.stem < 1 or any(c < 1 for c, _ in self.blocks):
            raise ValueError("no blocks left")
        layers = [nn.Conv2d(self.in_channels, self.stem, 3, 1, 1, bias=False), nn.BatchNorm2d(self.stem), nn.ReLU(inplace=True)]
        cin = self.stem
        for cout, stride in self.blocks:
            layers.append(basic_block(nn, cin, cout, stride))
            cin = cout
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, self.num_classes))

    def describe(self) -> str:
        return f"stem {self.stem}, blocks " + ", ".join(f"{c}/s{s}" for c, s in self.blocks) if self.blocks else "no blocks"


def describe_teacher(model: Any) -> Arch:
    """Read a ResNet-family ``nn.Sequential`` (as the zoo builds them) into an Arch; refuse anything else."""
    import torch.nn as nn

    mods = list(model.children()) if isinstance(model, nn.Sequential) else []
    blocks = [m for m in mods if type(m).__name__ == "BasicBlock"]
    if not mods or not isinstance(mods[0], nn.Conv2d) or not blocks or not isinstance(mods[-1], nn.Linear):
        kinds = ", ".join(type(m).__name__ for m in (mods or [model]))[:200]
        raise ConfigError(
            f"n2n searches ResNet-style models (stem conv, basic blocks, pooling, linear head); this model is: {kinds}",
            hint="e.g. edgesmith.zoo:trained_digits_resnet",
        )
    return Arch(mods[0].in_channels, mods[0].out_channels, [(b.conv1.out_channels, b.conv1.stride[0]) for b in blocks], mods[-1].out_features)


def recalibrate_bn(model: Any, x: Any, batch: int = 256) -> None:
    """Batch-norm running statistics recomputed over ``x`` (a brief training leaves them near their
    initial values, and an eval-mode score would then measure the statistics, not the student)."""
    import torch
    import torch.nn as nn

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the pass
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            model(x[i : i + batch])
    for m in bns:
        m.momentum = 0.1
    model.eval()


def params_of(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


class Policy:
    """Two LSTMs: a bidirectional one samples keep/remove per layer, a second one a width scale per kept layer."""

    def __init__(self, n_features: int = 5, hidden: int = 32, seed: int = 0):
        import torch
        import torch.nn as nn

        torch.manual_seed(seed)
        self.remove_lstm = nn.LSTM(n_features, hidden, batch_first=True, bidirectional=True)
        self.remove_head = nn.Linear(2 * hidden, 1)
        self.scale_lstm = nn.LSTM(n_features, hidden, batch_first=True)
        self.scale_head = nn.Linear(hidden, len(SCALES))
        with torch.no_grad():  # start near "keep everything" so early students are not all degenerate
            self.remove_head.bias.fill_(1.5)
        self.modules = nn.ModuleList([self.remove_lstm, self.remove_head, self.scale_lstm, self.scale_head])
        self.gen = torch.Generator().manual_seed(seed)

    def parameters(self) -> Any:
        return self.modules.parameters()

    def sample(self, teacher: Arch) -> tuple[Arch, Any, list[int], list[int]]:
        """A student architecture and the log-probability of the actions that made it."""
        import torch

        enc = torch.tensor(teacher.layers(), dtype=torch.float32)
        enc = enc / enc.abs().amax(0).clamp_min(1.0)  # each feature scaled to [0, 1]
        h, _ = self.remove_lstm(enc[None])
        keep_p = torch.sigmoid(self.remove_head(h[0])).squeeze(-1)
        keep = torch.bernoulli(keep_p.detach(), generator=self.gen)
        keep[0] = 1.0  # the stem stays
        logp = (keep * torch.log(keep_p + 1e-8) + (1 - keep) * torch.log(1 - keep_p + 1e-8))[1:].sum()
        kept = [i for i in range(len(enc)) if keep[i] > 0]
        h2, _ = self.scale_lstm(enc[kept][None])
        probs = torch.softmax(self.scale_head(h2[0]), -1)
        choice = torch.multinomial(probs.detach(), 1, generator=self.gen).squeeze(-1)
        logp = logp + torch.log(probs[torch.arange(len(kept)), choice] + 1e-8).sum()
        widths = {i: max(1, round(teacher.layers()[i][3] * SCALES[int(c)])) for i, c in zip(kept, choice)}
        blocks = [(widths[i], teacher.blocks[i - 1][1]) for i in kept if i > 0]
        return Arch(teacher.in_channels, widths[0], blocks, teacher.num_classes), logp, kept, [int(c) for c in choice]


@dataclass(frozen=True)
class N2NConfig:
    epochs: int = 6  # policy updates
    rollouts: int = 5  # students per update
    candidate_epochs: float = 2.0  # brief distillation of each candidate (MSE on the teacher's logits)
    final_epochs: float = 30.0  # each finalist's full distillation (Hinton KD)
    finalists: int = 3  # highest-reward students distilled in full
    min_compression: float = 5.0  # finalists come from students at least this many times smaller (if any)
    max_drop: float = 1.0  # held-out top-1 points the chosen student may lose to the teacher
    lr: float = 3e-3  # of the students
    policy_lr: float = 0.03
    baseline_decay: float = 0.8
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.rollouts < 1 or self.finalists < 1 or self.candidate_epochs <= 0 or self.final_epochs <= 0:
            raise ValueError("a search budget of zero: epochs, rollouts, finalists >= 1 and candidate_epochs, final_epochs > 0")
        if self.min_compression < 1 or self.max_drop < 0:
            raise ValueError("min_compression must be >= 1 and max_drop >= 0")


def search(teacher: Any, data: Any, names: list[str], cfg: N2NConfig, log: Any = None) -> dict[str, Any]:
    """The RL search; returns the best student (trained), its architecture and every rollout's numbers."""

    import torch

    arch_t = describe_teacher(teacher)
    p_teacher = params_of(teacher)
    x, y = labelled_tensors(data, names)
    if y is None:  # no labels: the teacher's own decisions stand in, and "accuracy" reads as decisions kept
        if log:
            log("n2n: the data has no labels: students are scored on the teacher's decisions they keep")
        y = predict(teacher, x).argmax(1)
    (x_train, _), (xv, yv) = split_train_val(x, y, 0.15, cfg.seed)
    acc_teacher = float((predict(teacher, xv).argmax(1) == yv).float().mean())
    policy = Policy(seed=cfg.seed)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.policy_lr)
    seen: dict[Any, Any] = {}
    baseline, rollouts, started = None, [], time.time()
    brief = RecoverConfig(
        loss="mse",
        alpha=1.0,
        epochs=cfg.candidate_epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        val_fraction=0.15,
        eval_every=10**6,
        patience=None,
        seed=cfg.seed,
    )
    for epoch in range(cfg.epochs):
        losses = []
        for r in range(cfg.rollouts):
            arch, logp, _, _ = policy.sample(arch_t)
            try:
                student = arch.build()
            except ValueError:
                R, acc, comp, student = -1.0, 0.0, 0.0, None
            else:
                torch.manual_seed(cfg.seed + epoch * 100 + r)
                fit(student, teacher, data, names, brief, progress=False)
                recalibrate_bn(student, x_train)
                acc = float((predict(student, xv).argmax(1) == yv).float().mean())
                comp = 1.0 - params_of(student) / p_teacher
                R = reward(acc / acc_teacher, comp) if comp >= 0 else -1.0
            rollouts.append(
                {
                    "epoch": epoch + 1,
                    "arch": arch.describe(),
                    "params": params_of(student) if student else 0,
                    "accuracy": round(acc * 100, 2),
                    "compression": round(comp, 4),
                    "reward": round(R, 4),
                }
            )
            if log:
                log(f"n2n epoch {epoch + 1} rollout {r + 1}: {arch.describe()} -> reward {R:.3f} (acc {acc * 100:.1f}, C {comp:.2f})")
            key = arch.describe()
            if student is not None and (key not in seen or R > seen[key][0]):
                seen[key] = (R, arch, copy.deepcopy(student))
            baseline = R if baseline is None else cfg.baseline_decay * baseline + (1 - cfg.baseline_decay) * R
            losses.append(-(R - baseline) * logp)
        opt.zero_grad()
        torch.stack(losses).mean().backward()
        opt.step()
    if not seen:
        raise ConfigError("n2n found no valid student", hint="raise epochs or rollouts")
    # finalists: the highest rewards among students at least min_compression x smaller (else among all),
    # each distilled for longer; the smallest within max_drop of the teacher on held-out data wins
    ranked = sorted(seen.values(), key=lambda t: -t[0])
    small = [t for t in ranked if params_of(t[2]) * cfg.min_compression <= p_teacher]
    finalists = (small or ranked)[: cfg.finalists]
    long = RecoverConfig(loss="kd", alpha=0.5, epochs=cfg.final_epochs, lr=cfg.lr, batch_size=cfg.batch_size, val_fraction=0.15, seed=cfg.seed)
    done = []
    for i, (_, arch, student) in enumerate(finalists):
        result = fit(student, teacher, data, names, long, label=f"n2n: distilling finalist {i + 1}/{len(finalists)}")
        val = float((predict(student, xv).argmax(1) == yv).float().mean()) * 100
        done.append({"arch": arch, "student": student, "final": result, "val_top1": val, "params": params_of(student)})
        if log:
            log(f"n2n finalist {arch.describe()}: {params_of(student):,} parameters, held-out top-1 {val:.2f} (teacher {acc_teacher * 100:.2f})")
    within = [d for d in done if d["val_top1"] >= acc_teacher * 100 - cfg.max_drop]
    pick = min(within, key=lambda d: d["params"]) if within else max(done, key=lambda d: d["val_top1"])
    return {
        "student": pick["student"],
        "arch": pick["arch"],
        "teacher_arch": arch_t,
        "params_teacher": p_teacher,
        "params_student": pick["params"],
        "teacher_val_top1": acc_teacher * 100,
        "student_val_top1": pick["val_top1"],
        "rollouts": rollouts,
        "final": pick["final"],
        "seconds": time.time() - started,
        "finalists": [{"arch": d["arch"].describe(), "params": d["params"], "val_top1": round(d["val_top1"], 2)} for d in done],
    }


def apply(model: Any, cfg: N2NConfig, ctx: Any) -> Any:
    names = [s.name for s in ctx.input_specs]
    found = search(model, ctx.calibration, names, cfg)
    ratio = found["params_teacher"] / found["params_student"]
    ctx.details["n2n"] = {
        "teacher": found["teacher_arch"].describe(),
        "student": found["arch"].describe(),
        "params_teacher": found["params_teacher"],
        "params_student": found["params_student"],
        "compression_x": round(ratio, 2),
        "teacher_val_top1": found["teacher_val_top1"],
        "student_val_top1": found["student_val_top1"],
        "finalists": found["finalists"],
        "rollouts": found["rollouts"],
        "seconds": round(found["seconds"], 1),
    }
    ctx.note(
        f"n2n: student architecture {found['arch'].describe()} (teacher {found['teacher_arch'].describe()}); "
        f"{found['params_student']:,} parameters, {ratio:.1f}x smaller; held-out top-1 {found['student_val_top1']:.2f} "
        f"(teacher {found['teacher_val_top1']:.2f}); {len(found['rollouts'])} students tried in {found['seconds']:.0f} s"
    )
    return found["student"]


PASS = PassInfo(
    "n2n",
    "torch",
    N2NConfig,
    apply,
    "N2N (§10): RL search (LSTM policies, REINFORCE) for a smaller ResNet-family student, distilled from the model",
    needs_calibration=True,
    changes_architecture=True,
)
