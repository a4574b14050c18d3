"""Durations as people write them in job files: ``30s``, ``15m``, ``1h30m``, ``1h 30m``, ``2d``
(and elapsed times as the CLI and the console print them).

A bare number (int, float or numeric string) is seconds. Units must come largest first and at
most once each, so ``30m 1h`` or ``1h 1h`` are rejected rather than silently summed.
"""

from __future__ import annotations

import math
import re

UNITS: dict[str, float] = {
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}
_ORDER = list(UNITS)
_PART = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|w|d|h|m|s)")
_NUMBER = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*")
EXPECTED = "a duration like 30s, 15m, 1h30m, 2d or 500ms (or a number of seconds)"


def parse_duration(value: str | int | float, *, allow_zero: bool = True) -> float:
    """Return the duration in seconds; raise ValueError saying what was expected.

    Negative durations are always rejected; ``allow_zero=False`` also rejects zero, for
    values that must be positive (timeouts, intervals).
    """
    if isinstance(value, bool):
        raise ValueError(f"expected {EXPECTED}, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value)
    else:
        raise ValueError(f"expected {EXPECTED}, got {value!r}")
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"expected a finite duration, got {value!r}")
    if seconds < 0:
        raise ValueError(f"expected a duration that is not negative, got {value!r}")
    if seconds == 0 and not allow_zero:
        raise ValueError(f"expected a duration greater than zero, got {value!r}")
    return seconds


def _parse_text(text: str) -> float:
    if _NUMBER.fullmatch(text):
        return float(text)
    pos, total, last_rank = 0, 0.0, -1
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None:
            if text[pos:].strip() == "":
                break
            raise ValueError(f"expected {EXPECTED}, got {text!r}")
        rank = _ORDER.index(m.group(2))
        if rank <= last_rank:
            raise ValueError(
                f"expected units largest first and each at most once (like 1h30m), got {text!r}"
            )
        last_rank = rank
        total += float(m.group(1)) * UNITS[m.group(2)]
        pos = m.end()
    if last_rank < 0:
        raise ValueError(f"expected {EXPECTED}, got {text!r}")
    return total


def elapsed_text(seconds: float, *, millis: bool = True, hours: bool = True) -> str:
    """An elapsed time for people: `850ms`, `12.3s`, `4m05s`, `2h05m`. Under a second in
    milliseconds unless `millis` is off; from two hours in hours unless `hours` is off."""
    if millis and seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200 or not hours:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
