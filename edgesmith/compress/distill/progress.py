"""Progress of a training run: a live bar in a terminal, plain lines in a log (a CI job, a redirected file).

Each line: the pass, the step (of how many, or the share of the time budget), the loss, the latest
held-out score, elapsed time and an ETA — at every evaluation and at least every ``every_s`` seconds, so
a log shows within a minute whether the run converges.
"""

from __future__ import annotations

import sys
import time

from edgesmith.terminal import say


def _clock(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    def __init__(self, enabled: bool, label: str, total: int | None, seconds: float | None, every_s: float = 30.0):
        self.label, self.total, self.seconds, self.every_s = label, total, seconds, every_s
        self.started = self.last = time.time()
        self.enabled = enabled
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            self.bar = Bar(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"), TimeElapsedColumn(), transient=True)
            self.task = self.bar.add_task(label, total=total or 100, status="")
            self.bar.start()

    def _share(self, step: int) -> float | None:
        shares = []
        if self.total:
            shares.append(step / self.total)
        if self.seconds:
            shares.append((time.time() - self.started) / self.seconds)
        return min(1.0, max(shares)) if shares else None

    def line(self, step: int, loss: float, score: float | None, name: str) -> str:
        elapsed = time.time() - self.started
        share = self._share(step)
        eta = f" · ETA {_clock(elapsed / share - elapsed)}" if share and share > 0.01 else ""
        of = f"/{self.total}" if self.total else ""
        pct = f" ({share:.0%})" if share is not None else ""
        held = f" · held-out {name} {score:.2f}" if score is not None else ""
        return f"{self.label}: step {step}{of}{pct} · loss {loss:.4f}{held} · {_clock(elapsed)}{eta}"

    def advance(self, step: int, loss: float, score: float | None, name: str, evaluated: bool = False) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            if step % 5 == 0 or evaluated:
                share = self._share(step)
                done = step if self.total else (share or 0) * 100
                self.bar.update(self.task, completed=done, status=self.line(step, loss, score, name).split(": ", 1)[1])
            return
        if evaluated or time.time() - self.last >= self.every_s:
            self.last = time.time()
            say(self.line(step, loss, score, name), err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
