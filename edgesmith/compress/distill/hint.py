"""Feature (hint) distillation: match intermediate activations of named layers (FitNets-style).

Forward hooks capture the output of each named student layer and its teacher counterpart; a learned
1×1 adapter (a 1×1 convolution for feature maps, a linear map for vectors) projects the student's
channels to the teacher's when the widths differ, and the loss is the mean squared error. Feature maps
of different spatial size are matched after average-pooling the larger to the smaller.
"""

from __future__ import annotations

from typing import Any

from edgesmith.errors import ConfigError


def layer_names(model: Any) -> list[str]:
    return [n for n, _ in model.named_modules() if n]


def _module(model: Any, name: str, role: str) -> Any:
    mods = dict(model.named_modules())
    if name not in mods or not name:
        names = layer_names(model)
        shown = ", ".join(names[:40]) + (f", ... ({len(names)} in all)" if len(names) > 40 else "")
        raise ConfigError(f"the {role} has no layer {name!r}", hint=f"its layers: {shown}")
    return mods[name]


class FeatureHint:
    """Captures (student, teacher) features of the given layer pairs; ``loss()`` after a forward pass of both."""

    def __init__(self, student: Any, teacher: Any, pairs: list[tuple[str, str]]):
        import torch.nn as nn

        if not pairs:
            raise ConfigError("hint distillation needs at least one [student_layer, teacher_layer] pair", hint="e.g. features: [[features.3, features.3]]")
        self.pairs = [(str(s), str(t)) for s, t in pairs]
        self.feats: dict[tuple[str, int, str], Any] = {}  # (layer, pair index, s|t) -> feature
        self.handles = []
        for i, (s, t) in enumerate(self.pairs):
            self.handles.append(_module(student, s, "student").register_forward_hook(self._keep((s, i, "s"))))
            self.handles.append(_module(teacher, t, "teacher").register_forward_hook(self._keep((t, i, "t"))))
        self.adapters = nn.ModuleList()
        self._built = False

    def _keep(self, key: tuple) -> Any:
        def hook(_m: Any, _inp: Any, out: Any) -> None:
            self.feats[key] = out[0] if isinstance(out, (tuple, list)) else out

        return hook

    def _build(self) -> None:
        import torch.nn as nn

        for i, (s, t) in enumerate(self.pairs):
            fs, ft = self.feats[(s, i, "s")], self.feats[(t, i, "t")]
            cs, ct = fs.shape[1], ft.shape[1]
            if fs.dim() == 4:
                self.adapters.append(nn.Conv2d(cs, ct, 1, bias=False) if cs != ct else nn.Identity())
            else:
                self.adapters.append(nn.Linear(cs, ct, bias=False) if cs != ct else nn.Identity())
        self._built = True

    def parameters(self) -> list:
        return list(self.adapters.parameters())

    def loss(self) -> Any:
        import torch.nn.functional as F

        if not self._built:
            self._build()
        total: Any = 0.0
        for i, (s, t) in enumerate(self.pairs):
            fs, ft = self.adapters[i](self.feats[(s, i, "s")]), self.feats[(t, i, "t")].detach()
            if fs.dim() == 4 and fs.shape[-2:] != ft.shape[-2:]:
                size = min(fs.shape[-2], ft.shape[-2]), min(fs.shape[-1], ft.shape[-1])
                fs, ft = F.adaptive_avg_pool2d(fs, size), F.adaptive_avg_pool2d(ft, size)
            if fs.shape != ft.shape:
                raise ConfigError(
                    f"hint layers {s!r} (student) and {t!r} (teacher) give features {list(fs.shape)} and {list(ft.shape)}",
                    hint="pair layers whose outputs have the same rank (feature map with feature map, vector with vector)",
                )
            total = total + F.mse_loss(fs, ft)
        return total / len(self.pairs)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
