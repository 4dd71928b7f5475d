"""Durations as people write them: ``90s``, ``5m``, ``1.5h``, ``2m30s`` — the same on the command line and in the
Python API. A bare number is refused on the command line (minutes or seconds? the reader cannot tell); the API
takes a number as seconds, as its ``*_s`` parameter names say."""

from __future__ import annotations

import math
import re

from edgesmith.errors import ConfigError

_UNITS = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|sec|min|s|m|h)")


def parse_duration(value: str | float | int, what: str = "duration", bare_seconds: bool = False) -> float:
    """Seconds in ``value`` (``"90s"``, ``"5m"``, ``"1h"``, ``"2m30s"``); a number is seconds only when
    ``bare_seconds`` (the API), else refused with a hint (the CLI)."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a duration, got {value!r}", hint="e.g. 90s, 5m or 1h")
    if isinstance(value, (int, float)):
        if not bare_seconds:
            raise ConfigError(f"{what} {value!r} has no unit", hint=f"write {value}s or {value}m")
        seconds = float(value)
    else:
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d*)?|\.\d+", text):
            if not bare_seconds:
                raise ConfigError(f"{what} {value!r} has no unit", hint=f"write {text}s or {text}m")
            seconds = float(text)
        else:
            parts = _PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ConfigError(f"{what} {value!r} is not a duration", hint="e.g. 90s, 5m, 1.5h or 2m30s")
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{what} must be positive, got {value!r}", hint="e.g. 90s or 5m")
    return seconds
