"""Per-identity token buckets: how often one workload identity may ask the CA for a certificate.

The CA service (:mod:`pki.service.app`) calls :meth:`RateLimiter.acquire` with the SPIFFE ID a
token proved, after authentication and before any CSR work. A healthy proxy renews once per
half lifetime, so the default (10 at once, then 1 per second) only bites a broken or hostile
client. Sans-IO: the clock is injected.

Memory stays bounded: a bucket that has refilled completely holds no information, so buckets
are dropped once full when the table grows past ``max_keys``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``burst`` requests at once per key, refilled at ``refill_per_s``."""

    def __init__(
        self,
        *,
        burst: int = 10,
        refill_per_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        if burst < 1 or refill_per_s <= 0:
            raise ValueError("rate limit: burst must be >= 1 and refill_per_s > 0")
        self.burst = burst
        self.refill_per_s = refill_per_s
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str) -> float | None:
        """Take one token for ``key``: ``None`` when allowed, else the seconds until one is
        available (the ``Retry-After``)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.refill_per_s)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.refill_per_s

    @staticmethod
    def retry_after_header(wait_s: float) -> str:
        """Whole seconds, rounded up, at least 1 (RFC 9110 delay-seconds)."""
        return str(max(1, math.ceil(wait_s)))

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.refill_per_s
        for key in [k for k, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[key]
