"""The blocking-query rules of the Consul reference, without I/O.

Used by every watch loop in ``federation.consul`` (``imports``, ``leader``):

- ``next_index``: the index to send next. It resets to 0 when Consul's index goes
  backwards (a restored snapshot, a new cluster), so the next query answers at once, and
  it never sends an index below 1 otherwise (a 0 from Consul would turn the loop into a
  busy loop of immediate answers).
- ``Pacer``: the loop's rate limit, a least time between two queries, so a key that
  changes constantly (or a server that returns at once) cannot make the loop spin.
- ``Backoff``: exponential retry delays with jitter (half to full) after errors, reset by a success.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


def parse_index(raw: object) -> int:
    """py-consul hands the ``X-Consul-Index`` header back as a string."""
    try:
        value = int(str(raw))
    except ValueError:
        raise ValueError(f"X-Consul-Index is not a number: {raw!r}") from None
    return value


def next_index(previous: int, returned: int) -> int:
    """The index for the next blocking query, given the one we sent and the one we got."""
    if returned < previous:
        return 0
    return max(returned, 1)


def changed(previous: int, returned: int) -> bool:
    """Whether a result may differ from the last one seen (a return never promises it)."""
    return returned != previous or previous == 0


@dataclass(slots=True)
class Pacer:
    """At most one query per ``min_interval_s``: ``delay(now)`` says how long to wait."""

    min_interval_s: float
    _last: float | None = None

    def delay(self, now: float) -> float:
        if self._last is None:
            return 0.0
        return max(0.0, self._last + self.min_interval_s - now)

    def started(self, now: float) -> None:
        self._last = now


@dataclass(slots=True)
class Backoff:
    initial_s: float
    max_s: float
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        """The wait before the next attempt after one more failure."""
        self.failures += 1
        ceiling = min(self.max_s, self.initial_s * 2.0 ** min(self.failures - 1, 30))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.failures = 0
