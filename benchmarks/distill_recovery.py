"""Distillation: recovery with vs without it, TopKLD vs KL, BPKD, self-distillation's α* vs a grid, N2N.

    python benchmarks/distill_recovery.py [qat|topkld|bpkd|self|n2n ...]

Everything trains on the digits' train split (CPU, 2 threads) and is scored on the 600 held-out digits
(segmentation: mIoU on the held-out split), so no number here was tuned on what it reports.
- qat: 4-bit weights, W4A8, round-to-nearest alone vs QAT with labels only (``recover: {loss: ce}``)
  vs QAT distilled from the float model (``recover: {loss: kd}``), same steps, 3 seeds.
- topkld: a 4x narrower digits CNN trained from the float one on 150 labelled digits for 300 steps:
  labels only, Hinton KD, TopKLD (k=3); 5 seeds.
- bpkd: the digits segmentation task; an encoder-decoder teacher trained, then a 4x narrower student
  with labels only, pixel-wise KD, and BPKD; 3 seeds.
- self: self-distillation of the digits CNN (width 8): one round with α* from two half-budget fits vs
  the best α of a 5-point grid chosen on held-out training data; accuracy and seconds.
- n2n: N2N from the trained digits ResNet (6 policy epochs x 5 rollouts), final student distilled.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def _data(source: str, samples: int | None = None, size: int = 8):
    from edgesmith.data import load_dataset
    from edgesmith.recipe import InputSpec

    return load_dataset(source, [InputSpec(name="input", shape=["batch", 1, size, size])], role="calibration", split="train", samples=samples)


def _top1(model, size: int = 8) -> float:
    import torch

    from edgesmith.compress.distill.engine import predict
    from edgesmith.data.digits import load_digits_split

    x, y = load_digits_split("test", size)
    return float((predict(model, torch.from_numpy(x)).argmax(1).numpy() == y).mean() * 100)


def _ms(vals: list[float]) -> str:
    return f"{np.mean(vals):.2f} ± {np.std(vals):.2f}"


def bench_qat() -> None:
    from pathlib import Path

    import torch

    from edgesmith.compress import PassContext, build_pass_config, get_pass
    from edgesmith.recipe import InputSpec
    from edgesmith.zoo import pretrained_digits_cnn, trained_digits_mobilenet, trained_digits_resnet

    print("\n### 4-bit QAT recovery (W4A8), same steps, top-1 on the held-out digits (mean ± sd over 3 seeds)\n")
    print("| model | float | RTN 4-bit, no recovery | QAT, labels only | QAT, distilled (KD) | steps |")
    print("|---|---|---|---|---|---|")
    for name, factory, size, steps in (
        ("digits CNN", pretrained_digits_cnn, 8, 200),
        ("digits ResNet", trained_digits_resnet, 32, 150),
        ("digits MobileNet", trained_digits_mobilenet, 32, 150),
    ):
        data = _data("digits" if size == 8 else "digits32", None, size)
        specs = (InputSpec(name="input", shape=["batch", 1, size, size]),)

        def ctx(specs=specs, data=data) -> PassContext:
            return PassContext(work_dir=Path("/tmp"), input_specs=specs, calibration=data)

        rtn = _top1(get_pass("rtn").apply(factory(), build_pass_config("rtn", {"bits": 4}), ctx()), size)
        res = {"ce": [], "kd": []}
        for seed in range(3):
            for loss in res:
                torch.manual_seed(seed)
                rec = {"loss": loss, "alpha": 0.0 if loss == "ce" else 0.5, "steps": steps, "lr": 1e-4, "seed": seed, "patience": None}
                m = get_pass("qat").apply(factory(), build_pass_config("qat", {"weight_bits": 4, "recover": rec}), ctx())
                res[loss].append(_top1(m, size))
        print(f"| {name} | {_top1(factory(), size):.2f} | {rtn:.2f} | {_ms(res['ce'])} | {_ms(res['kd'])} | {steps} |", flush=True)


def bench_topkld() -> None:
    import torch

    from edgesmith.compress.distill.engine import RecoverConfig, fit
    from edgesmith.zoo.digits import digits_cnn, pretrained_digits_cnn

    print("\n### TopKLD vs KL: a 4x narrower digits CNN from the float one, 150 labelled digits, 300 steps\n")
    teacher, data = pretrained_digits_cnn(), _data("digits", 150)
    print("| loss | test top-1 (mean ± sd, 5 seeds) | per seed | seconds per run |")
    print("|---|---|---|---|")
    rows = {}
    for label, loss, alpha in (("labels only", "ce", 0.0), ("Hinton KD (T=8, alpha 0.7)", "kd", 0.7), ("TopKLD k=3 (T=8, alpha 0.7)", "topkld", 0.7)):
        accs, secs = [], []
        for seed in range(5):
            torch.manual_seed(seed)
            s = digits_cnn(width=4)
            t0 = time.time()
            fit(
                s,
                teacher,
                data,
                ["input"],
                RecoverConfig(loss=loss, alpha=alpha, temperature=8.0, k=3, steps=300, lr=3e-3, val_fraction=0.0, patience=None, seed=seed),
                progress=False,
            )
            secs.append(time.time() - t0)
            accs.append(_top1(s))
        rows[label] = accs
        print(f"| {label} | {_ms(accs)} | per seed {' '.join(f'{a:.1f}' for a in accs)} | {np.mean(secs):.1f} s |", flush=True)
    kd, top = rows["Hinton KD (T=8, alpha 0.7)"], rows["TopKLD k=3 (T=8, alpha 0.7)"]
    print(f"\nTopKLD - KD per seed: {' '.join(f'{a - b:+.1f}' for a, b in zip(top, kd))}")


def bench_bpkd() -> None:
    import torch

    from edgesmith.compress.distill.engine import RecoverConfig, fit, predict
    from edgesmith.data import load_dataset
    from edgesmith.recipe import InputSpec
    from edgesmith.zoo.segmentation import miou, seg_student, seg_teacher

    print("\n### BPKD on the digits segmentation task (11 classes, 32x32), mIoU on the held-out split\n")
    spec = [InputSpec(name="input", shape=["batch", 1, 32, 32])]
    train = load_dataset("edgesmith.zoo.segmentation:seg_train", spec, role="calibration")
    test = load_dataset("edgesmith.zoo.segmentation:seg_test", spec, role="evaluation")
    xt = torch.from_numpy(np.concatenate([b.inputs["input"] for b in test.batches]))
    yt = test.labels()

    def score(m) -> float:
        return miou(predict(m, xt).argmax(1).numpy(), yt)

    torch.manual_seed(0)
    teacher = seg_teacher()
    fit(teacher, seg_teacher(), train, ["input"], RecoverConfig(loss="ce", alpha=0.0, epochs=15, lr=3e-3, patience=None), progress=False)
    print(f"teacher ({sum(p.numel() for p in teacher.parameters()):,} parameters): mIoU {score(teacher):.2f}\n")
    print("| student (4x narrower) | mIoU (mean ± sd, 3 seeds) | per seed |")
    print("|---|---|---|")
    for label, loss, alpha in (("labels only (CE)", "ce", 0.0), ("pixel-wise KD (T=4, alpha 0.5)", "kd", 0.5), ("BPKD (CE + 20 body + 50 edge)", "bpkd", 0.0)):
        vals = []
        for seed in range(3):
            torch.manual_seed(seed)
            s = seg_student()
            fit(
                s,
                teacher,
                train,
                ["input"],
                RecoverConfig(loss=loss, alpha=alpha, epochs=15, lr=3e-3, patience=None, seed=seed, temperature=4.0 if loss == "kd" else 1.0),
                progress=False,
            )
            vals.append(score(s))
        print(f"| {label} | {_ms(vals)} | {' '.join(f'{v:.1f}' for v in vals)} |", flush=True)


def bench_self() -> None:
    import copy
    from pathlib import Path

    import torch

    from edgesmith.compress import PassContext, build_pass_config, get_pass
    from edgesmith.compress.distill.engine import labelled_tensors, predict, split_train_val
    from edgesmith.recipe import InputSpec
    from edgesmith.zoo.digits import digits_cnn
    from edgesmith.zoo.train_digits import train

    print("\n### Self-distillation: alpha* (two half-budget fits) vs the best alpha of a grid, one round, digits CNN width 8\n")
    data = _data("digits")
    specs = (InputSpec(name="input", shape=["batch", 1, 8, 8]),)
    torch.manual_seed(0)
    base, _ = train(lambda: digits_cnn(width=8), epochs=30, seed=0)  # step 0: the model trained on labels
    x, y = labelled_tensors(data, ["input"])
    _, (xv, yv) = split_train_val(x, y, 0.15, 0)
    print("| method | alpha | held-out training-split top-1 | test top-1 | seconds |")
    print("|---|---|---|---|---|")
    t0 = time.time()
    ctx = PassContext(work_dir=Path("/tmp"), input_specs=specs, calibration=data)
    m = get_pass("self_distill").apply(copy.deepcopy(base), build_pass_config("self_distill", {"rounds": 1, "epochs": 30}), ctx)
    star = ctx.details["self_distill"]["rounds"][0]
    print(f"| alpha* (closed form, §8) | {star['alpha']:.3f} | {star['val_top1']:.2f} | {_top1(m):.2f} | {time.time() - t0:.1f} |", flush=True)
    t0, best = time.time(), None
    for a in (0.0, 0.25, 0.5, 0.75, 1.0):
        ctx = PassContext(work_dir=Path("/tmp"), input_specs=specs, calibration=data)
        m = get_pass("self_distill").apply(copy.deepcopy(base), build_pass_config("self_distill", {"rounds": 1, "epochs": 30, "alpha": a}), ctx)
        val = float((predict(m, xv).argmax(1) == yv).float().mean() * 100)
        if best is None or val > best[1]:
            best = (a, val, _top1(m))
    print(f"| grid 0, .25, .5, .75, 1 (best on held-out) | {best[0]:.2f} | {best[1]:.2f} | {best[2]:.2f} | {time.time() - t0:.1f} |", flush=True)
    print(f"\n(the incoming model, step 0: test top-1 {_top1(base):.2f})")


def bench_n2n() -> None:
    import torch

    from edgesmith.compress.distill.n2n import N2NConfig, search
    from edgesmith.zoo import trained_digits_resnet

    print("\n### N2N: a student from the trained digits ResNet (6 policy epochs x 5 rollouts, brief MSE distillation each)\n")
    torch.manual_seed(0)
    teacher = trained_digits_resnet()
    found = search(teacher, _data("digits32", None, 32), ["input"], N2NConfig(final_epochs=60), log=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    t_acc, s_acc = _top1(teacher, 32), _top1(found["student"], 32)
    ratio = found["params_teacher"] / found["params_student"]
    print("| | architecture | parameters | test top-1 |")
    print("|---|---|---|---|")
    print(f"| teacher | {found['teacher_arch'].describe()} | {found['params_teacher']:,} | {t_acc:.2f} |")
    print(f"| N2N student | {found['arch'].describe()} | {found['params_student']:,} ({ratio:.1f}x smaller) | {s_acc:.2f} ({s_acc - t_acc:+.2f}) |")
    print(
        f"\n{len(found['rollouts'])} students tried; search + final distillation {found['seconds']:.0f} s; "
        f"mean reward per policy epoch: " + ", ".join(f"{np.mean([r['reward'] for r in found['rollouts'] if r['epoch'] == e]):.3f}" for e in range(1, 7))
    )
    print(
        "finalists (distilled 60 epochs; held-out = 15% of the training split): "
        + "; ".join(f"{f['arch']} {f['params']:,} params {f['val_top1']:.2f}" for f in found["finalists"])
        + f" — teacher {found['teacher_val_top1']:.2f}"
    )


def main() -> None:
    import torch

    torch.set_num_threads(2)
    parts = {"qat": bench_qat, "topkld": bench_topkld, "bpkd": bench_bpkd, "self": bench_self, "n2n": bench_n2n}
    for name in sys.argv[1:] or list(parts):
        parts[name]()


if __name__ == "__main__":
    main()
