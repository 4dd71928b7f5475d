"""Progress hooks every long step reports through; the CLI swaps in a rich display."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class Reporter:
    """Silent by default (the Python API); ``edgesmith.cli`` passes a spinner that ticks each step."""

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[None]:
        yield

    def info(self, text: str) -> None:
        pass
