"""Train the digits CNN and write its safetensors checkpoint (reproduces the bundled weights).

python -m edgesmith.zoo.train_digits --out edgesmith/zoo/weights/digits_cnn.safetensors
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

from edgesmith.data.digits import load_digits_split
from edgesmith.zoo.digits import digits_cnn


def train(
    factory: Callable[[], Any] | None = None,
    epochs: int = 30,
    seed: int = 0,
    lr: float = 3e-3,
    size: int = 8,
    inputs: Callable[[np.ndarray], tuple] | None = None,
    heads: Callable[[Any, Any], list] | None = None,
) -> tuple[Any, float]:
    """Train ``factory()`` (default: the digits CNN) on the digits train split at ``size``x``size``;
    returns the model in eval mode and its held-out top-1 (fraction) on its first output.

    ``inputs`` turns a batch of images into the model's arguments (default: the images);
    ``heads(labels, images)`` gives the target of each output (default: one output, the digit): integer
    targets train with cross-entropy, float targets (boxes, points) with mean squared error."""
    import torch

    to_args = inputs or (lambda a: (a,))
    torch.manual_seed(seed)
    x_np, y_np = load_digits_split("train", size)
    args, y = tuple(torch.from_numpy(a) for a in to_args(x_np)), torch.from_numpy(y_np)
    model: Any = (factory or digits_cnn)()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * ((len(y) + 63) // 64))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y), generator=gen).split(64):
            out = model(*(a[idx] for a in args))
            outs = out if isinstance(out, (tuple, list)) else (out,)
            labels = heads(y[idx], args[0][idx]) if heads else [y[idx]]
            loss = sum(
                torch.nn.functional.cross_entropy(o, t) if not t.is_floating_point() else torch.nn.functional.mse_loss(o, t) for o, t in zip(outs, labels)
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    xt, yt = load_digits_split("test", size)
    with torch.no_grad():
        out = model(*(torch.from_numpy(a) for a in to_args(xt)))
        first = out[0] if isinstance(out, (tuple, list)) else out
        acc = float((first.argmax(1).numpy() == yt).mean())
    return model, acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(2)
    model, acc = train(epochs=args.epochs, seed=args.seed)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.out)
    print(f"held-out top-1 {acc * 100:.2f}% -> {args.out}")


if __name__ == "__main__":
    main()
