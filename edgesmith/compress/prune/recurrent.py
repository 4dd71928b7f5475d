"""Hidden units of recurrent layers (LSTM, GRU, RNN) removed, for ``prune_channels: recurrent_ratio``.

Written by hand: Torch-Pruning's LSTM handler slices the wrong axes (``weight_hh`` by rows twice, ``weight_ih``'s
columns by gate rows) and knows one layer only. A layer's gates are stacked blocks of ``hidden`` rows, so
removing unit ``j`` of a direction removes row ``j`` of every gate block of that direction's ``weight_ih``,
``weight_hh`` and biases, column ``j`` of its ``weight_hh``, and the column of ``j`` in whatever reads the
direction's output: the next layer's ``weight_ih`` (offset by ``direction * hidden``), or, after the last
layer, the Linear layers that take the sequence output. Each layer and direction keeps its own best units
(one hidden size for all, as ``nn.LSTM`` has). A unit's importance is the norm of the weights that write it
times the norm of the weights that read it.

Only a recurrent layer whose sequence output goes straight into Linear layers (and whose final states are
unused) is cut: that is found on the model's ``torch.fx`` graph; any other layer keeps its size, with the
reason noted. EasyOCR's recognizer: its two bidirectional LSTMs took 59% of the time of the 75%-pruned model.
"""

from __future__ import annotations

import operator
from typing import Any

GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def readers(model: Any) -> tuple[dict[str, list[str]], dict[str, str]]:
    """``{recurrent layer: [Linear layers reading its sequence output]}`` for the layers that can be cut, and
    ``{recurrent layer: why not}`` for the others."""
    import torch
    from torch import fx

    rnns = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.RNNBase)}
    if not rnns:
        return {}, {}
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # noqa: BLE001 - any tracing failure: the hidden sizes stay
        why = f"the model cannot be traced by torch.fx ({type(exc).__name__})"
        return {}, dict.fromkeys(rnns, why)
    modules = dict(model.named_modules())
    found: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    for node in graph.nodes:
        if node.op != "call_module" or node.target not in rnns:
            continue
        verdict = _why_not(node, rnns[node.target], modules)
        if isinstance(verdict, str):
            skipped[node.target] = verdict
        else:
            found[node.target] = verdict
    for name in rnns:
        if name not in found and name not in skipped:
            skipped[name] = "not called in the traced forward"
    return found, skipped


def _why_not(node: Any, rnn: Any, modules: dict[str, Any]) -> str | list[str]:
    import torch

    if rnn.mode not in GATES or rnn.proj_size:
        return "a projected or unknown recurrent layer"
    linears: list[str] = []
    for user in node.users:
        if user.op != "call_function" or user.target is not operator.getitem:
            return "its output is used whole (not as output[0])"
        if user.args[1] != 0:
            if user.users:
                return "its final states are used"
            continue
        for reader in user.users:
            if reader.op != "call_module" or not isinstance(modules.get(reader.target), torch.nn.Linear):
                return "its sequence output goes to something other than a Linear layer"
            linears.append(reader.target)
    return linears or "nothing reads its sequence output"


def prune(model: Any, ratio: float, round_to: int | None) -> tuple[dict[str, list[int]], dict[str, str]]:
    """Remove ``ratio`` of the hidden units of every recurrent layer ``readers`` allows (in place):
    ``{layer: [hidden before, after]}``, and ``{layer: why it kept its size}`` for the others."""
    found, skipped = readers(model)
    modules = dict(model.named_modules())
    changed = {}
    for name, linears in found.items():
        rnn = modules[name]
        h = rnn.hidden_size
        keep = h - round(ratio * h)
        if round_to:
            keep = min(h, max(round_to, round(keep / round_to) * round_to))
        keep = max(1, keep)
        if keep < h:
            _cut(rnn, [modules[n] for n in linears], keep)
            changed[name] = [h, keep]
    return changed, skipped


def _suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")


def _rows(idx: Any, h: int, gates: int) -> Any:
    import torch

    return torch.cat([idx + g * h for g in range(gates)])


def _cut(rnn: Any, linears: list[Any], keep: int) -> None:
    import torch

    h, gates = rnn.hidden_size, GATES[rnn.mode]
    dirs = 2 if rnn.bidirectional else 1
    kept: list[list[Any]] = []
    for layer in range(rnn.num_layers):
        kept.append([])
        for d in range(dirs):
            kept[layer].append(_best_units(rnn, linears, layer, d, keep))
    with torch.no_grad():
        for layer in range(rnn.num_layers):
            cols = torch.cat([kept[layer - 1][d] + d * h for d in range(dirs)]) if layer else None
            for d in range(dirs):
                sfx, idx = _suffix(layer, d), kept[layer][d]
                rows = _rows(idx, h, gates)
                w_ih = getattr(rnn, "weight_ih" + sfx)[rows]
                _set(rnn, "weight_ih" + sfx, w_ih if cols is None else w_ih[:, cols])
                _set(rnn, "weight_hh" + sfx, getattr(rnn, "weight_hh" + sfx)[rows][:, idx])
                if rnn.bias:
                    for b in ("bias_ih", "bias_hh"):
                        _set(rnn, b + sfx, getattr(rnn, b + sfx)[rows])
        out_cols = torch.cat([kept[-1][d] + d * h for d in range(dirs)])
        for lin in linears:
            lin.weight = torch.nn.Parameter(lin.weight[:, out_cols].contiguous())
            lin.in_features = int(out_cols.numel())
    rnn.hidden_size = keep
    rnn._init_flat_weights()


def _set(rnn: Any, name: str, value: Any) -> None:
    import torch

    setattr(rnn, name, torch.nn.Parameter(value.contiguous()))


def _best_units(rnn: Any, linears: list[Any], layer: int, d: int, keep: int) -> Any:
    """The ``keep`` units of one layer and direction whose in-weights and out-weights weigh most, in order."""
    import torch

    h, gates = rnn.hidden_size, GATES[rnn.mode]
    sfx = _suffix(layer, d)
    w_ih, w_hh = getattr(rnn, "weight_ih" + sfx).detach(), getattr(rnn, "weight_hh" + sfx).detach()
    writes = (w_ih.pow(2).sum(1) + w_hh.pow(2).sum(1)).view(gates, h).sum(0)
    reads = w_hh.pow(2).sum(0)
    col = slice(d * h, (d + 1) * h)
    if layer + 1 < rnn.num_layers:
        for dd in range(2 if rnn.bidirectional else 1):
            reads = reads + getattr(rnn, "weight_ih" + _suffix(layer + 1, dd)).detach()[:, col].pow(2).sum(0)
    else:
        for lin in linears:
            reads = reads + lin.weight.detach()[:, col].pow(2).sum(0)
    score = writes.sqrt() * reads.sqrt()
    return torch.topk(score, keep).indices.sort().values
