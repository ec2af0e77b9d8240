"""Go ``time.Duration`` text: parsing (``time.ParseDuration``) and formatting (``String()``).

Consul reads ``?wait=``, session ``TTL`` and ``LockDelay`` with Go's parser, and quotes Go's
error text back to the client, so this follows it: a sign, then one or more decimal numbers
each with a unit (ns, us, µs, ms, s, m, h); a bare ``0`` is allowed, any other bare number is
"missing unit". Values are integer nanoseconds.
"""

from __future__ import annotations

import json

NS = 1
US = 1000
MS = 1000 * US
SECOND = 1000 * MS
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

_UNITS = {
    "ns": NS,
    "us": US,
    "µs": US,  # U+00B5 micro sign
    "μs": US,  # U+03BC greek mu
    "ms": MS,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}
_MAX = (1 << 63) - 1


class DurationError(ValueError):
    """Carries Go's error text, e.g. ``time: missing unit in duration "10"``."""


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def parse_duration(text: str) -> int:
    """Parse Go duration text into nanoseconds, with Go's error messages."""
    orig = text
    neg = False
    if text and text[0] in "+-":
        neg = text[0] == "-"
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise DurationError(f"time: invalid duration {_quote(orig)}")
    total = 0
    while text:
        if not (text[0] == "." or text[0].isdigit()):
            raise DurationError(f"time: invalid duration {_quote(orig)}")
        i = 0
        while i < len(text) and text[i].isdigit():
            i += 1
        whole, text = text[:i], text[i:]
        frac = ""
        if text.startswith("."):
            j = 1
            while j < len(text) and text[j].isdigit():
                j += 1
            frac, text = text[1:j], text[j:]
        if not whole and not frac:
            raise DurationError(f"time: invalid duration {_quote(orig)}")
        k = 0
        while k < len(text) and text[k] != "." and not text[k].isdigit():
            k += 1
        unit_text, text = text[:k], text[k:]
        if not unit_text:
            raise DurationError(f"time: missing unit in duration {_quote(orig)}")
        unit = _UNITS.get(unit_text)
        if unit is None:
            raise DurationError(
                f"time: unknown unit {_quote(unit_text)} in duration {_quote(orig)}"
            )
        value = int(whole or "0") * unit
        if frac:
            value += int(frac) * unit // (10 ** len(frac))
        total += value
        if total > _MAX:
            raise DurationError(f"time: invalid duration {_quote(orig)}")
    return -total if neg else total


def _fraction(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + f"{rest:0{digits}d}".rstrip("0")


def format_duration(ns: int) -> str:
    """Go's ``Duration.String()``: ``10s``, ``1m30s``, ``24h0m0s``, ``1.5ms``, ``0s``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < SECOND:
        if u < US:
            return f"{sign}{u}ns"
        if u < MS:
            return f"{sign}{_fraction(u, US)}µs"
        return f"{sign}{_fraction(u, MS)}ms"
    hours, rest = divmod(u, HOUR)
    minutes, rest = divmod(rest, MINUTE)
    text = f"{_fraction(rest, SECOND)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text
