"""Checkpoints of a training pass in the run folder, and ``--resume`` from them.

A checkpoint is one file per training pass, ``OUT/checkpoints/<pass>.pt``, written atomically (a kill or a
full disk mid-write leaves the previous one intact) at least every epoch, at the end, and on Ctrl-C or
SIGTERM. It holds tensors and plain values only (read back with ``weights_only=True``): the student's and the
best checkpoint's weights, the optimiser, the step, the random generator, the history, and the recipe the
run was started with. ``--resume`` continues from it; a recipe that changed since is refused with the
keys that differ, a corrupt file or one of another network is refused with what to do.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesmith.errors import ConfigError
from edgesmith.outputs import atomic_write_bytes


@dataclass
class Checkpoints:
    """Where a run's training passes keep their checkpoints (``ctx.checkpoints``), and whether to resume."""

    folder: Path
    recipe: dict[str, Any] = field(default_factory=dict)  # the run's recipe: a resumed run must be the same
    resume: bool = False

    def for_pass(self, label: str) -> Checkpoint:
        return Checkpoint(self.folder / (re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.") + ".pt"), self.recipe, self.resume)


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _differences(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if old == new else [f"{prefix or 'recipe'}: {json.dumps(old)} -> {json.dumps(new)}"]


@dataclass
class Checkpoint:
    path: Path
    recipe: dict[str, Any]
    resume: bool

    def save(self, state: dict[str, Any]) -> None:
        import torch

        buf = io.BytesIO()
        torch.save({**state, "recipe": json.dumps(self.recipe, sort_keys=True, default=str)}, buf)
        try:
            atomic_write_bytes(self.path, buf.getvalue())
        except OSError as exc:
            raise ConfigError(
                f"cannot write the training checkpoint {self.path}: {exc.strerror or exc}",
                hint="free disk space (the previous checkpoint is intact) and rerun with --resume",
            ) from None

    def load(self, student: Any) -> dict[str, Any] | None:
        """The checkpoint to resume from (None when not resuming or none was written); refused when it is not this run's."""
        import torch

        if not self.resume or not self.path.is_file():
            return None
        try:
            state = torch.load(str(self.path), map_location="cpu", weights_only=True)
            saved = json.loads(state["recipe"])
            weights = state["student"]
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is one clear error
            raise ConfigError(
                f"the checkpoint {self.path} is corrupt or not edgesmith's ({type(exc).__name__})",
                hint="delete it to start this training pass over, or run without --resume",
            ) from None
        now = json.loads(json.dumps(self.recipe, sort_keys=True, default=str))
        diff = _differences(saved, now)
        if diff:
            raise ConfigError(
                f"--resume: the recipe changed since the checkpoint {self.path.name} was written ({'; '.join(diff[:4])}"
                + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
                + ")",
                hint="rerun the recipe the run started with, or start afresh without --resume (in another folder, or with --force)",
            )
        mine = student.state_dict()
        wrong = [k for k in mine if k not in weights or tuple(weights[k].shape) != tuple(mine[k].shape)]
        if wrong:
            raise ConfigError(
                f"the checkpoint {self.path} holds another network (first difference at {wrong[0]})",
                hint="delete it to start this training pass over, or run without --resume",
            )
        return state
