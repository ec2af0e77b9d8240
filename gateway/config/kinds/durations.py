"""Istio's durations: ``1h``, ``1m``, ``1s``, ``500ms``, ``1.5s``, ``1h30m``.

Istio reads a ``google.protobuf.Duration`` from YAML in Go's ``time.ParseDuration`` syntax
and requires it to be at least 1 ms and a whole number of milliseconds. Used by
``gateway.config.kinds.destinationrule`` and by the health-check annotations of
``gateway.config.kinds.health``. (Gateway API fields use GEP-2257 durations instead:
``gateway.config.kinds.meta.parse_duration``.)
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")
_NANOS = {
    "h": 3600 * 10**9,
    "m": 60 * 10**9,
    "s": 10**9,
    "ms": 10**6,
    "us": 10**3,
    "µs": 10**3,
    "ns": 1,
}
MILLI = 10**6
EXAMPLES = "such as 10s, 500ms, 1.5s or 1h30m"


def parse_nanos(text: str) -> int | None:
    """Nanoseconds in a Go duration, or None when ``text`` is not one."""
    if text == "0":
        return 0
    position = 0
    total = Decimal(0)
    for part in _PART.finditer(text):
        if part.start() != position:
            return None
        try:
            total += Decimal(part.group(1)) * _NANOS[part.group(2)]
        except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
            return None
        position = part.end()
    if position == 0 or position != len(text):
        return None
    return int(total)


def duration_problem(text: str, *, allow_zero: bool = False) -> str | None:
    """Why ``text`` is not a valid Istio duration, or None when it is."""
    nanos = parse_nanos(text)
    if nanos is None:
        return f'"{text}" is not a duration {EXAMPLES}'
    if nanos == 0 and allow_zero:
        return None
    if nanos < MILLI:
        return f'"{text}" is too short: a duration must be at least 1ms'
    if nanos % MILLI:
        return f'"{text}" is finer than a millisecond; only whole milliseconds are supported'
    return None


def seconds(text: str) -> float:
    """Seconds in a duration already checked by :func:`duration_problem`."""
    nanos = parse_nanos(text)
    if nanos is None:
        raise ValueError(f"not a duration: {text!r}")
    return nanos / 10**9
