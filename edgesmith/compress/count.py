"""MACs and parameters, counted by edgesmith itself on one forward pass, true for every layer type.

Counting by module type (what Torch-Pruning's ``count_ops_and_params`` does) misses what it does not know:
a ``Conv2d`` subclass, an ``F.conv2d`` or ``torch.matmul`` in a forward — on a pretrained mobile network it
reported 21 M MACs for 385 M. Here the tensor ops themselves are counted (PyTorch's ``FlopCounterMode``
sees every convolution, matmul and attention kernel the forward runs, whatever module or function calls it),
and the recurrent layers it does not see (LSTM, GRU, RNN run as one fused kernel) are added from their
shapes by a hook. One multiply-accumulate = 2 FLOPs. Elementwise ops, norms and pooling are not counted,
as usual for MACs.
"""

from __future__ import annotations

from typing import Any


def _rnn_macs(module: Any, inputs: tuple) -> int:
    x = inputs[0]
    if hasattr(x, "data") and type(x).__name__ == "PackedSequence":
        steps_batch = int(x.data.shape[0])
    elif x.dim() == 2:  # unbatched [T, in]
        steps_batch = int(x.shape[0])
    else:
        steps_batch = int(x.shape[0] * x.shape[1])
    import torch

    gates = 4 if isinstance(module, torch.nn.LSTM) else 3 if isinstance(module, torch.nn.GRU) else 1
    hidden = module.hidden_size
    proj = getattr(module, "proj_size", 0) or 0
    out = proj or hidden
    dirs = 2 if module.bidirectional else 1
    total = 0
    for layer in range(module.num_layers):
        cin = module.input_size if layer == 0 else out * dirs
        per_step = gates * hidden * (cin + out) + (hidden * proj if proj else 0)
        total += dirs * steps_batch * per_step
    return total


def count_macs(model: Any, example: tuple) -> int:
    """Multiply-accumulates of one forward of ``model`` on ``example`` (a tuple of inputs), whole batch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    rnn_total = [0]
    rnns = [m for m in model.modules() if isinstance(m, torch.nn.RNNBase)]
    hooks = [m.register_forward_hook(lambda mod, inp, out: rnn_total.__setitem__(0, rnn_total[0] + _rnn_macs(mod, inp))) for m in rnns]
    was = model.training
    try:
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return int(counter.get_total_flops() // 2) + rnn_total[0]


def count_params(model: Any) -> int:
    """Parameters, each shared tensor once."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total
