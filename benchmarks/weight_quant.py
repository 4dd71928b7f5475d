"""Low-bit weights on the zoo: round-to-nearest vs GPFQ (docs/algorithms.md §1), same grid, same models.

    python benchmarks/weight_quant.py              # digits CNN, digits ResNet, digits MobileNetV2; 4 and 3 bits
    python benchmarks/weight_quant.py --bits 4

Each model is batch-norm folded, then its conv/linear weights quantized per output channel
(symmetric, 2^b-1 levels) by ``rtn`` or ``gpfq`` (m=128 calibration images from the train split),
optionally followed by ``bias_correction``, or given per-layer widths averaging b bits by
``mixed_precision`` (sensitivity ranking + greedy, then RTN or GPFQ; or EQ-Net: elastic supernet
trained 300 steps on the labelled calibration data, predictor, genetic search); activations stay float, so the figures isolate the
weight quantizer. Reported on the 600 held-out digits: top-1 and cross-entropy, and the loss
increase over float — the issue's target is GPFQ's increase at most half of RTN's. The trained
digits32 models come from the zoo cache (``edgesmith zoo train`` trains them first if needed).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", default="4,3")
    ap.add_argument("--models", default="digits_cnn,digits_resnet,digits_mobilenet")
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F

    from edgesmith.compress import PassContext, build_pass_config, get_pass
    from edgesmith.data import load_dataset
    from edgesmith.data.digits import load_digits_split
    from edgesmith.recipe import InputSpec
    from edgesmith.zoo import pretrained_digits_cnn, trained_digits_mobilenet, trained_digits_resnet

    torch.set_num_threads(2)
    models = {"digits_cnn": (pretrained_digits_cnn, 8), "digits_resnet": (trained_digits_resnet, 32), "digits_mobilenet": (trained_digits_mobilenet, 32)}
    work = Path(tempfile.mkdtemp())
    rows = []
    for name in args.models.split(","):
        factory, size = models[name]
        spec = InputSpec(name="input", shape=["batch", 1, size, size])
        calib = load_dataset("digits" if size == 8 else "digits32", [spec], role="calibration", split="train", samples=256, batch_size=64)
        xt, yt = (torch.from_numpy(a) for a in load_digits_split("test", size))

        def evaluate(model, xt=xt, yt=yt):
            with torch.no_grad():
                logits = model(xt)
            return float((logits.argmax(1) == yt).float().mean() * 100), float(F.cross_entropy(logits, yt))

        def ctx(spec=spec, calib=calib):
            return PassContext(work_dir=work, input_specs=(spec,), calibration=calib)

        base = get_pass("fold_bn").apply(factory(), build_pass_config("fold_bn", {}), ctx())
        f_top1, f_loss = evaluate(base)
        print(f"{name}: float top-1 {f_top1:.2f}%, loss {f_loss:.4f}", flush=True)
        for bits in (int(b) for b in args.bits.split(",")):
            res = {}
            for label, passes in (
                ("rtn", [("rtn", {"bits": bits})]),
                ("gpfq", [("gpfq", {"bits": bits})]),
                ("gpfq+bias_correction", [("gpfq", {"bits": bits}), ("bias_correction", {})]),
                ("mixed rtn", [("mixed_precision", {"average_bits": bits, "quantizer": "rtn"})]),
                ("mixed gpfq", [("mixed_precision", {"average_bits": bits, "quantizer": "gpfq"})]),
                ("eqnet", [("mixed_precision", {"average_bits": bits, "method": "eqnet"})]),
            ):
                model, c = copy.deepcopy(base), ctx()
                t0 = time.perf_counter()
                for p, opts in passes:
                    model = get_pass(p).apply(model, build_pass_config(p, opts), c)
                took = time.perf_counter() - t0
                top1, loss = evaluate(model)
                res[label] = (top1, loss, took)
                print(f"  {bits}-bit {label:22s} top-1 {top1:6.2f}%  loss {loss:.4f} (+{loss - f_loss:.4f})  {took:.1f}s", flush=True)
            ratio = (res["gpfq"][1] - f_loss) / max(res["rtn"][1] - f_loss, 1e-9)
            rows.append((name, bits, f_top1, f_loss, res, ratio))
    print(
        "\n| model | bits | float top-1 / loss | RTN top-1 / loss | GPFQ top-1 / loss | GPFQ + bias corr. | mixed (avg b bits) RTN | mixed GPFQ | EQ-Net (avg b bits) | GPFQ loss increase / RTN's | GPFQ time | EQ-Net time |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, bits, ft, fl, res, ratio in rows:
        cell = lambda k, res=res: f"{res[k][0]:.2f} / {res[k][1]:.4f}"  # noqa: E731
        print(
            f"| {name} | {bits} | {ft:.2f} / {fl:.4f} | {cell('rtn')} | {cell('gpfq')} | {cell('gpfq+bias_correction')} | {cell('mixed rtn')} | {cell('mixed gpfq')} | {cell('eqnet')} | {ratio:.2f} | {res['gpfq'][2]:.1f} s | {res['eqnet'][2]:.0f} s |"
        )


if __name__ == "__main__":
    main()
