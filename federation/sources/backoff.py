"""Exponential backoff with jitter, for reconnecting to an API server (sans-IO).

Used by ``federation.sources.kube_watch``: each failure waits longer (``initial`` doubling up
to ``cap``), each wait is jittered to between half and all of that, so that many watches
that failed together do not come back together; a success resets it.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        initial_s: float = 0.5,
        cap_s: float = 30.0,
        *,
        factor: float = 2.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.factor = factor
        self.failures = 0
        self._rng = rng

    def next_delay(self) -> float:
        """The wait after one more failure (seconds)."""
        ceiling = min(self.cap_s, self.initial_s * self.factor**self.failures)
        self.failures += 1
        return ceiling * (0.5 + 0.5 * self._rng())

    def reset(self) -> None:
        self.failures = 0

    def __repr__(self) -> str:
        return f"<Backoff [{self.failures} failures | {self.initial_s}s..{self.cap_s}s]>"
