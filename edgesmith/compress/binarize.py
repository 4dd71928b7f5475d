"""``binarize``: conv and linear layers become binary — weights sign(W) with a per-output-channel scale
α = mean |W| (XNOR-Net), activations sign(x − β) with a learned per-channel threshold β (ReActNet's RSign:
the input of a layer that follows a ReLU is never negative, so a plain sign would be +1 everywhere; β
starts at each channel's median on calibration data). Gradients pass the sign straight through, clipped
to |x − β| ≤ 1 (``ste``) or shaped by Bi-Real's piecewise polynomial (``bireal``). The first and last
layers stay in floating point by default; layers the binary kernels cannot run (1-D/3-D or transposed
convs) are listed and kept in float. Binary nets need recovery: ``recover:`` trains them through the
distillation engine, the float model as teacher.

After training the layers are baked into their deploy form, which exports to standard ONNX ops:
``Where(x >= β, 1, −1)`` followed by a Conv/Gemm with ±α weights — the lowering any runtime runs. The
report gives the bit-packed size of the binary layers (1 bit per weight plus a float scale per output
channel) against FP32. Running the layers on the compiled XNOR-popcount kernels
(``runtime/kernels/binary.py``) through a custom op is the next step of issue 15 and not wired yet.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from edgesmith.compress.distill.engine import RecoverConfig, recover
from edgesmith.compress.layers import check_names, set_module, weight_layers
from edgesmith.compress.mst import build_tree, op_counts, sign_rows, tree_penalty
from edgesmith.compress.prune.subnetwork import subnet_mask_ste
from edgesmith.compress.registry import PassInfo
from edgesmith.errors import ConfigError


def _default_recover() -> RecoverConfig:
    return RecoverConfig(loss="kd", alpha=0.5, temperature=4.0, epochs=10, eval_every=20, patience=None)


@dataclass(frozen=True)
class BinarizeConfig:
    keep_first: bool = True  # the first conv/linear stays float (raw pixels carry more than a sign)
    keep_last: bool = True  # the classifier stays float
    keep: tuple[str, ...] = ()  # more layers kept in float (dotted names)
    gradient: Literal["ste", "bireal"] = "ste"
    recover: RecoverConfig | None = field(default_factory=_default_recover)  # null: no training (a binary net rarely survives that)
    calibration_samples: int = 256  # to start each threshold β at its channel's median
    mst_regularizer: float = 0.0  # λ of the MST penalty (compress/mst.py): lowers the binary convs' tree weight
    mst_every: int = 25  # steps between recomputing each layer's tree for the penalty
    mask: float | None = None  # Biprop-style: keep this share of each binary layer's weights, picked by learned scores

    def __post_init__(self) -> None:
        if self.mask is not None and not 0.0 < self.mask < 1.0:
            raise ValueError(f"mask is the share of weights kept, between 0 and 1 (exclusive), got {self.mask}")


def _sign_fn(kind: str) -> Any:
    import torch

    class SignSTE(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, u: Any) -> Any:
            ctx.save_for_backward(u)
            return torch.where(u >= 0, torch.ones_like(u), -torch.ones_like(u))

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            (u,) = ctx.saved_tensors
            if kind == "bireal":  # d/du of the piecewise quadratic approximation of sign
                shape = torch.where(u.abs() <= 1, 2 - 2 * u.abs(), torch.zeros_like(u))
                return grad * shape
            return grad * (u.abs() <= 1).to(grad.dtype)

    return SignSTE.apply


def binary_layer(layer: Any, kind: str, keep: float | None = None) -> Any:
    """A trainable binary copy of a Conv2d or Linear (weights kept in float, binarized in the forward). With
    ``keep`` (Biprop, docs/algorithms.md §5): a score per weight, learned straight through a top-``keep`` mask, and
    α per output channel over the kept weights: the layer is ternary {−α, 0, +α}."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    sign = _sign_fn(kind)
    conv = isinstance(layer, nn.Conv2d)

    class BinaryLayer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer
            channels = layer.in_channels if conv else layer.in_features
            self.beta = nn.Parameter(torch.zeros(channels))
            if keep is not None:  # scores start at |W|: the trained model's large weights are kept first
                self.scores = nn.Parameter(layer.weight.detach().abs().clone())

        def _beta(self, x: Any) -> Any:
            return channel_view(self.beta, x, conv)

        def binary_weight(self) -> Any:
            w = self.layer.weight
            dims = tuple(range(1, w.dim()))
            if keep is None:
                alpha = w.abs().mean(dim=dims, keepdim=True)
                wb = torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w)) * alpha
                return (wb - w).detach() + w  # straight through to the float weights
            mask = subnet_mask_ste(self.scores.abs(), keep)  # NOTE: abs outside the STE, so the gradient reaches S with its sign
            m = mask.detach()
            alpha = (w.abs() * m).sum(dim=dims, keepdim=True) / m.sum(dim=dims, keepdim=True).clamp(min=1)
            wb = torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w)) * alpha
            return ((wb - w).detach() + w) * mask

        def forward(self, x: Any) -> Any:
            xb = sign(x - self._beta(x))
            if conv:
                lay = self.layer
                return F.conv2d(xb, self.binary_weight(), lay.bias, lay.stride, lay.padding, lay.dilation, lay.groups)
            return F.linear(xb, self.binary_weight(), self.layer.bias)

    return BinaryLayer()


def channel_view(beta: Any, x: Any, conv: bool) -> Any:
    """β shaped to broadcast over ``x``'s channels: dimension 1 of a convolution's input, the last of a linear
    layer's (a [N, T, features] sequence into a CRNN's linear layers, not only [N, features])."""
    return beta.view(1, -1, *([1] * (x.dim() - 2))) if conv else beta.view(*([1] * (x.dim() - 1)), -1)


def deploy_layer(trained: Any) -> Any:
    """The baked form: a float Conv2d/Linear holding ±α weights behind a fixed sign(x − β) — standard ops when exported."""
    import torch
    import torch.nn as nn

    with torch.no_grad():
        w = trained.binary_weight().detach().clone()
        beta = trained.beta.detach().clone()
    layer = copy.deepcopy(trained.layer)
    with torch.no_grad():
        layer.weight.copy_(w)

    class DeployBinary(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer
            self.register_buffer("beta", beta)

        def forward(self, x: Any) -> Any:
            b = channel_view(self.beta, x, isinstance(self.layer, nn.Conv2d))
            return self.layer(torch.where(x >= b, torch.ones_like(x), -torch.ones_like(x)))

    return DeployBinary()


def packed_bytes(layer: Any, masked: bool = False) -> int:
    """1 bit per weight (rows padded to 64-bit words, as the kernels store them; 2 with a Biprop mask: sign and
    kept) plus one float32 α per output channel."""
    w = layer.weight
    per_row = w[0].numel()
    return int(w.shape[0] * ((per_row + 63) // 64) * 8 * (2 if masked else 1) + w.shape[0] * 4 + (layer.bias.numel() * 4 if layer.bias is not None else 0))


def _init_thresholds(model: Any, wrapped: dict, ctx: Any, samples: int) -> None:
    """β of each binary layer = the median of its input channel on calibration data (so its sign splits it)."""
    import torch

    data = ctx.calibration
    if data is None:
        return
    names = [s.name for s in ctx.input_specs]
    feeds = data.first(min(samples, data.num_samples))
    seen: dict[str, Any] = {}
    hooks = [w.register_forward_pre_hook(lambda mod, inp, n=n: seen.__setitem__(n, inp[0].detach())) for n, w in wrapped.items()]
    try:
        with torch.no_grad():
            model.eval()
            model(*[torch.from_numpy(np.asarray(feeds[k])) for k in names])
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for n, w in wrapped.items():
            x = seen.get(n)
            if x is not None:
                flat = x.transpose(0, 1).reshape(x.shape[1], -1) if isinstance(w.layer, torch.nn.Conv2d) else x.reshape(-1, x.shape[-1]).T
                w.beta.copy_(flat.median(dim=1).values)


def apply(model: Any, cfg: BinarizeConfig, ctx: Any) -> Any:
    import torch.nn as nn

    layers = weight_layers(model)
    check_names(layers, cfg.keep, "binarize", "keep")
    if not layers:
        raise ConfigError("binarize: the model has no conv or linear layer", hint="binarize works on nn.Conv2d / nn.Linear modules")
    keep = set(cfg.keep) | ({layers[0][0]} if cfg.keep_first else set()) | ({layers[-1][0]} if cfg.keep_last else set())
    unsupported = [n for n, m in layers if n not in keep and not isinstance(m, (nn.Conv2d, nn.Linear))]
    chosen = [(n, m) for n, m in layers if n not in keep and isinstance(m, (nn.Conv2d, nn.Linear))]
    if not chosen:
        raise ConfigError(
            "binarize: no layer left to binarize (first and last are kept in float by default)",
            hint="set keep_first/keep_last to false, or give a model with more conv/linear layers",
        )
    teacher = copy.deepcopy(model).eval()
    float_bytes = sum(m.weight.numel() * 4 + (m.bias.numel() * 4 if m.bias is not None else 0) for _, m in chosen)
    binary_bytes = sum(packed_bytes(m, cfg.mask is not None) for _, m in chosen)
    wrapped = {}
    for n, m in chosen:
        wrapped[n] = binary_layer(m, cfg.gradient, cfg.mask)
        set_module(model, n, wrapped[n])
    _init_thresholds(model, wrapped, ctx, cfg.calibration_samples)
    extra, trees = None, {}
    if cfg.mst_regularizer > 0:
        convs = {n: w for n, w in wrapped.items() if isinstance(w.layer, nn.Conv2d)}
        calls = [0]

        def extra(_: Any) -> Any:
            if calls[0] % cfg.mst_every == 0:
                trees.update({n: build_tree(sign_rows(w.layer.weight.detach().numpy())).parent for n, w in convs.items()})
            calls[0] += 1
            return cfg.mst_regularizer * sum(tree_penalty(w.layer.weight, trees[n]) for n, w in convs.items())

    fitted = recover(model, teacher, ctx, cfg.recover, "binarize", extra_loss=extra) if cfg.recover is not None else None
    mst = {}
    if any(isinstance(w.layer, nn.Conv2d) for w in wrapped.values()):
        for n, w in wrapped.items():
            if isinstance(w.layer, nn.Conv2d) and w.layer.groups == 1:
                rows = sign_rows(w.layer.weight.detach().numpy())
                mst[n] = op_counts(rows, build_tree(rows))
    for n, w in wrapped.items():
        set_module(model, n, deploy_layer(w))
    model.eval()
    total_float = sum(p.numel() * 4 for p in teacher.parameters())
    ctx.details["binarize"] = {
        "binary_layers": sorted(wrapped),
        "kept_float": sorted(keep),
        "unsupported_kept_float": unsupported,
        "binary_layers_fp32_bytes": float_bytes,
        "binary_layers_packed_bytes": binary_bytes,
        "binary_layers_ratio": round(float_bytes / max(binary_bytes, 1), 2),
        "model_fp32_bytes": total_float,
        "model_packed_bytes": total_float - float_bytes + binary_bytes,
        "gradient": cfg.gradient,
        "mst_regularizer": cfg.mst_regularizer,
        "mst_ops": mst,
        "mask_keep": cfg.mask,
        **({"recovery": fitted.summary()} if fitted else {}),
    }
    ctx.note(
        f"binarize: {len(wrapped)} layers binary (weights sign·α per output channel, activations sign(x − β)); "
        f"kept in float: {', '.join(sorted(keep)) or 'none'}"
        + (f"; cannot be binarized, kept in float: {', '.join(unsupported)}" if unsupported else "")
        + f". Binary layers bit-packed: {binary_bytes:,} bytes vs {float_bytes:,} FP32 ({float_bytes / max(binary_bytes, 1):.1f}x); "
        f"whole model {total_float - float_bytes + binary_bytes:,} vs {total_float:,} bytes"
        + (f"; recovery: {fitted.summary()}" if fitted else "; no recovery training (recover: null)")
        + ". Exported in the standard-op lowering (Where + Conv with ±α weights)"
        + (
            f". Biprop masks keep {cfg.mask:.0%} of each binary layer's weights: the layers are ternary (−α, 0, +α), which the "
            "XNOR-popcount kernel cannot run (no zero weight), so pack_binary leaves them in the standard-op lowering"
            if cfg.mask is not None
            else ""
        )
    )
    return model


PASS = PassInfo(
    "binarize",
    "torch",
    BinarizeConfig,
    apply,
    "binary conv/linear layers (sign·α weights, sign(x − β) activations, STE or Bi-Real gradients), first/last kept float, trained through the distillation engine",
    needs_calibration=True,
    changes_architecture=False,
)
