"""EQ-Net (docs/algorithms.md §2): one weight-sharing network trained for many quantization forms, an
accuracy predictor over them, and an evolutionary search under an average-bits budget.

- ``ElasticQuantizer``: LSQ+ style x_q = clamp(round((x − β)/s), n, p)·s + β with straight-through
  rounding and a separate (s, β) for every (bits 2..8) × {symmetric, asymmetric} × {per-tensor,
  per-channel}; each is initialised the first time its form is used by trying 80 ranges max·(1 − 0.01i)
  and keeping the one with the least mean |x − x_q|^2.4. Symmetric forms have β ≡ 0.
- ``wdr_loss``: 0.015·mean((kurtosis − 1.8)²) + 1.0·mean(skewness²) over weights (not the first layer).
- ``train_supernet``: group progressive guidance — per step the largest form with cross-entropy, then
  random forms and the smallest, each with 0.5·KL(previous form's detached logits ‖ current) + 0.5·CE.
- ``Predictor`` + ``evolve``: a 3-layer MLP (hidden 400) on one-hot per-layer bits and forms, trained on
  sampled configurations' measured accuracy; a genetic search (population 100, 500 iterations, parents
  25 %, mutation 50 % with p = 0.1) under the budget. First and last layers stay at 8 bits.

Here the elastic forms apply to weights (activations are quantized to 8 bits by the ONNX step).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgesmith.compress.layers import set_module
from edgesmith.compress.quantize._snap import record_grid
from edgesmith.errors import ConfigError

BITS = (2, 3, 4, 5, 6, 7, 8)
FORMS = ((True, "per-channel"), (True, "per-tensor"), (False, "per-channel"), (False, "per-tensor"))


def _round_ste(x: Any) -> Any:
    return (x.round() - x).detach() + x


def elastic_quantizer(channels: int) -> Any:
    import torch
    import torch.nn as nn

    class ElasticQuantizer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.channels = channels
            self.step = nn.ParameterDict()
            self.offset = nn.ParameterDict()
            self.form = (8, True, "per-channel")

        @staticmethod
        def key(bits: int, symmetric: bool, granularity: str) -> str:
            return f"b{bits}_{'sym' if symmetric else 'asym'}_{'pc' if granularity == 'per-channel' else 'pt'}"

        def set(self, bits: int, symmetric: bool, granularity: str) -> None:
            self.form = (bits, symmetric, granularity)

        def bounds(self) -> tuple[int, int]:
            bits, sym, _ = self.form
            return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if sym else (0, 2**bits - 1)

        def params(self, x: Any) -> tuple[Any, Any]:
            k = self.key(*self.form)
            if k not in self.step:
                self._init(x, k)
            return self.step[k], self.offset[k]

        @torch.no_grad()
        def _init(self, x: Any, k: str) -> None:
            bits, sym, gran = self.form
            n, p = self.bounds()
            flat = x.detach().reshape(x.shape[0], -1) if gran == "per-channel" else x.detach().reshape(1, -1)
            best_s: Any = None
            best_b: Any = None
            best_err: Any = None
            for i in range(80):
                f = 1 - 0.01 * i
                if sym:
                    s = flat.abs().amax(1) * f / max(p, 1)
                    b = torch.zeros_like(s)
                else:
                    lo, hi = flat.amin(1) * f, flat.amax(1) * f
                    s, b = (hi - lo) / (p - n), lo
                s = s.clamp(min=1e-8)
                q = torch.clamp(torch.round((flat - b[:, None]) / s[:, None]), n, p) * s[:, None] + b[:, None]
                err = ((flat - q).abs() ** 2.4).mean(1)
                if best_err is None:
                    best_s, best_b, best_err = s.clone(), b.clone(), err
                else:
                    better = err < best_err
                    best_s, best_b, best_err = torch.where(better, s, best_s), torch.where(better, b, best_b), torch.minimum(err, best_err)
            self.step[k] = nn.Parameter(best_s)
            self.offset[k] = nn.Parameter(best_b, requires_grad=not sym)

        def forward(self, x: Any) -> Any:
            s, b = self.params(x)
            n, p = self.bounds()
            shape = (-1,) + (1,) * (x.dim() - 1)
            g = 1.0 / math.sqrt(x[0].numel() * max(p, 1))
            s = (s.abs().clamp(min=1e-8) * g + (s.abs().clamp(min=1e-8) * (1 - g)).detach()).reshape(shape)
            b = 0.0 if self.form[1] else (b * g + (b * (1 - g)).detach()).reshape(shape)
            return torch.clamp(_round_ste((x - b) / s), n, p) * s + b

    return ElasticQuantizer()


def wdr_loss(weights: list[Any]) -> Any:
    """Weight distribution regulariser: pushes each weight tensor towards a uniform distribution
    (kurtosis 1.8, skewness 0)."""
    import torch

    kurt, skew = [], []
    for w in weights:
        x = w.reshape(-1)
        mu, sd = x.mean(), x.std().clamp(min=1e-8)
        z = (x - mu) / sd
        kurt.append((z**4).mean())
        skew.append((z**3).mean())
    kurt_t, skew_t = torch.stack(kurt), torch.stack(skew)
    return 0.015 * ((kurt_t - 1.8) ** 2).mean() + 1.0 * (skew_t**2).mean()


@dataclass
class Config:
    """Per searchable layer: (bits, form index into FORMS)."""

    genes: list[tuple[int, int]]

    def avg_bits(self, sizes: list[int], fixed_bits: int = 0) -> float:
        return (sum(b * n for (b, _), n in zip(self.genes, sizes)) + fixed_bits) / max(sum(sizes), 1)


def encode(cfg: Config) -> list[float]:
    out: list[float] = []
    for b, f in cfg.genes:
        out += [1.0 if b == x else 0.0 for x in BITS] + [1.0 if f == i else 0.0 for i in range(len(FORMS))]
    return out


def predictor(n_inputs: int, hidden: int = 400) -> Any:
    import torch.nn as nn

    return nn.Sequential(nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))


def fit_predictor(configs: list[Config], accuracy: list[float], epochs: int = 400, seed: int = 0) -> Any:
    import torch

    torch.manual_seed(seed)
    x = torch.tensor([encode(c) for c in configs])
    y = torch.tensor(accuracy).reshape(-1, 1)
    mean, std = y.mean(), y.std().clamp(min=1e-6)
    net = predictor(x.shape[1])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(epochs):
        loss = ((net(x) - (y - mean) / std) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    return lambda cs: (net(torch.tensor([encode(c) for c in cs])).detach().reshape(-1) * std + mean).tolist()


def evolve(
    predict: Any,
    n_layers: int,
    sizes: list[int],
    budget_bits: float,
    bits: tuple[int, ...],
    population: int = 100,
    iterations: int = 500,
    parents: float = 0.25,
    mutation: float = 0.5,
    p_gene: float = 0.1,
    seed: int = 0,
    fixed_bits: int = 0,
) -> tuple[Config, float]:
    """Genetic search for the configuration with the best predicted accuracy under ``budget_bits``
    average bits per weight."""
    rng = random.Random(seed)

    def feasible(c: Config) -> bool:
        return c.avg_bits(sizes, fixed_bits) <= budget_bits + 1e-9

    def sample() -> Config:
        for _ in range(1000):
            c = Config([(rng.choice(bits), rng.randrange(len(FORMS))) for _ in range(n_layers)])
            if feasible(c):
                return c
        return Config([(min(bits), 0) for _ in range(n_layers)])

    def mutate(c: Config) -> Config:
        g = [(rng.choice(bits), rng.randrange(len(FORMS))) if rng.random() < p_gene else x for x in c.genes]
        return Config(g)

    def cross(a: Config, b: Config) -> Config:
        return Config([x if rng.random() < 0.5 else y for x, y in zip(a.genes, b.genes)])

    pop = [sample() for _ in range(population)]
    scores = predict(pop)
    for _ in range(iterations):
        order = sorted(range(len(pop)), key=lambda i: -scores[i])
        keep = [pop[i] for i in order[: max(2, int(population * parents))]]
        children: list[Config] = []
        while len(children) < population - len(keep):
            child = mutate(rng.choice(keep)) if rng.random() < mutation else cross(rng.choice(keep), rng.choice(keep))
            if feasible(child):
                children.append(child)
        pop = keep + children
        scores = [scores[i] for i in order[: len(keep)]] + predict(children)
    best = max(range(len(pop)), key=lambda i: scores[i])
    return pop[best], scores[best]


def run_eqnet(
    model: Any,
    layers: list[tuple[str, Any]],
    budget_avg_bits: float,
    bits: tuple[int, ...],
    ctx: Any,
    *,
    steps: int,
    predictor_samples: int,
    lr: float,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """Train the elastic supernet on labelled calibration data, fit the predictor, search, and leave
    each layer's weights quantized in its chosen form. Returns what was chosen and measured."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    data = ctx.calibration
    if data is None or not data.has_labels:
        raise ConfigError(
            "EQ-Net trains on labelled data, and the calibration data has no labels", hint="give labelled calibration data, or use `method: sensitivity`"
        )
    if len(layers) < 3:
        raise ConfigError(
            f"EQ-Net keeps the first and last layers at 8 bits and searches the rest; the model has {len(layers)} layers",
            hint="use `method: sensitivity` for models this small",
        )
    torch.manual_seed(seed)
    rng = random.Random(seed)
    names = [s.name for s in ctx.input_specs]
    inputs = {k: torch.from_numpy(np.concatenate([b.inputs[k] for b in data.batches])) for k in names}
    labels = torch.from_numpy(np.concatenate([b.labels for b in data.batches])).long()
    n = len(labels)
    n_val = max(n // 4, 1)  # held back from supernet training: the predictor's accuracies come from here
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train_idx, val_idx = perm[n_val:], perm[:n_val]

    class EQLayer(nn.Module):
        def __init__(self, layer: Any) -> None:
            super().__init__()
            self.layer, self.q = layer, elastic_quantizer(layer.weight.shape[0])

        def forward(self, x: Any) -> Any:
            w = self.q(self.layer.weight)
            return F.linear(x, w, self.layer.bias) if isinstance(self.layer, nn.Linear) else self.layer._conv_forward(x, w, self.layer.bias)

    wrapped = [EQLayer(m) for _, m in layers]
    for (name, _), w in zip(layers, wrapped):
        set_module(model, name, w)
    search = wrapped[1:-1]
    sizes = [w.layer.weight.numel() for w in search]
    fixed_bits = 8 * (wrapped[0].layer.weight.numel() + wrapped[-1].layer.weight.numel())
    total = sum(sizes) + wrapped[0].layer.weight.numel() + wrapped[-1].layer.weight.numel()

    def apply(cfg: Config) -> None:
        for w in (wrapped[0], wrapped[-1]):
            w.q.set(8, True, "per-channel")
        for w, (b, f) in zip(search, cfg.genes):
            w.q.set(b, *FORMS[f])

    def forward(idx: Any) -> Any:
        return model(*[inputs[k][idx] for k in names])

    largest = Config([(max(bits), 0) for _ in search])
    smallest = Config([(min(bits), 0) for _ in search])
    with torch.no_grad():  # initialise every form's (s, beta) on the float weights
        model.eval()
        for b in bits:
            for f in range(len(FORMS)):
                apply(Config([(b, f)] * len(search)))
                forward(train_idx[:8])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    gen = torch.Generator().manual_seed(seed)
    weights_for_wdr = [w.layer.weight for w in wrapped[1:]]
    for _ in range(steps):
        idx = train_idx[torch.randint(0, len(train_idx), (min(batch_size, len(train_idx)),), generator=gen)]
        opt.zero_grad()
        apply(largest)
        logits = forward(idx)
        loss = F.cross_entropy(logits, labels[idx])
        prev = logits.detach()
        for cfg in (Config([(rng.choice(bits), rng.randrange(len(FORMS))) for _ in search]), smallest):
            apply(cfg)
            logits = forward(idx)
            kl = F.kl_div(F.log_softmax(logits, 1), F.log_softmax(prev, 1), log_target=True, reduction="batchmean")
            loss = loss + 0.5 * kl + 0.5 * F.cross_entropy(logits, labels[idx])
            prev = logits.detach()
        (loss + wdr_loss(weights_for_wdr)).backward()
        opt.step()
    model.eval()

    def accuracy(cfg: Config) -> float:
        apply(cfg)
        with torch.no_grad():
            return float((forward(val_idx).argmax(1) == labels[val_idx]).float().mean() * 100)

    sampled = [largest, smallest] + [Config([(rng.choice(bits), rng.randrange(len(FORMS))) for _ in search]) for _ in range(predictor_samples)]
    measured = [accuracy(c) for c in sampled]
    predict = fit_predictor(sampled, measured, seed=seed)
    budget_bits = budget_avg_bits * total
    if (budget_bits - fixed_bits) / max(sum(sizes), 1) < min(bits):
        raise ConfigError(
            f"an average of {budget_avg_bits:g} bits cannot be met with the first and last layers at 8 bits and {min(bits)}-bit weights elsewhere",
            hint="raise average_bits or allow narrower candidate_bits",
        )
    best, predicted = evolve(predict, len(search), sizes, (budget_bits - fixed_bits) / max(sum(sizes), 1) if sum(sizes) else 8, bits, seed=seed)
    # NOTE: the budget covers all weights; first/last layers at 8 bits take their share, the rest is searched
    chosen_acc = accuracy(best)
    apply(best)

    chosen: dict[str, Any] = {}
    with torch.no_grad():
        for (name, _), w in zip(layers, wrapped):
            bits_, sym, gran = w.q.form
            w.layer.weight.copy_(w.q(w.layer.weight))
            s, b = w.q.params(w.layer.weight)
            if sym and bits_ < 8:  # symmetric grids are kept exactly by ptq_int8 (8-bit uses -128, int8's edge)
                record_grid(ctx, name, s.abs().detach().expand(w.layer.weight.shape[0]) if gran == "per-tensor" else s.abs().detach(), bits_)
            set_module(model, name, w.layer)
            chosen[name] = {"bits": bits_, "symmetric": sym, "granularity": gran}
    avg = sum(chosen[nm]["bits"] * m.weight.numel() for nm, m in layers) / total
    return {
        "choice": chosen,
        "average_bits": avg,
        "predicted_top1": predicted,
        "measured_top1": chosen_acc,
        "predictor_samples": len(sampled),
        "predictor_mae": float(np.mean(np.abs(np.array(predict(sampled)) - np.array(measured)))),
        "steps": steps,
        "validation_samples": int(n_val),
    }
