"""Load balancers: choose an endpoint pool for a request. Pure code, no I/O.

``ROUND_ROBIN`` cycles through the endpoints; ``LEAST_REQUEST`` is Envoy's power of two
choices: draw two endpoints at random and take the one with fewer requests in flight;
``RANDOM`` draws one; :class:`RingHash` (DestinationRule ``consistentHash``) maps a request's
hash key onto a ring of endpoint points, so that the same key keeps reaching the same
endpoint while the endpoint set stays the same, and few keys move when it changes: an added
endpoint takes its ~1/n share, and since every endpoint gets ``ring_size / n`` points (as in
Envoy) a few keys also move between the others, under 2/n in all.
Ring positions come from a keyed hash that is the same in every worker and process.

Only usable endpoints are candidates (``gateway.upstream.selection`` filters them).

Called by ``gateway.upstream.selection``.
"""

from __future__ import annotations

import hashlib
import random
from bisect import bisect_left
from collections.abc import Sequence
from typing import Protocol

from gateway.upstream.pool import EndpointPool


class Balancer(Protocol):
    def pick(self, key: int) -> EndpointPool | None:
        """An endpoint; ``key`` is the request's hash key (only the ring hash reads it)."""
        ...


def hash_key(data: bytes) -> int:
    """A 64-bit hash, stable across processes (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class RoundRobin:
    __slots__ = ("_endpoints", "_next")

    def __init__(self, endpoints: Sequence[EndpointPool]) -> None:
        self._endpoints = tuple(endpoints)
        # Start at a random offset so that workers do not all hit the same endpoint first.
        self._next = random.randrange(len(self._endpoints)) if self._endpoints else 0

    def pick(self, key: int) -> EndpointPool | None:
        eps = self._endpoints
        n = len(eps)
        if n == 0:
            return None
        if n == 1:
            return eps[0]
        i = self._next
        self._next = i + 1 if i + 1 < n else 0
        return eps[i]


class LeastRequest:
    __slots__ = ("_endpoints", "_rand")

    def __init__(
        self, endpoints: Sequence[EndpointPool], rand: random.Random | None = None
    ) -> None:
        self._endpoints = tuple(endpoints)
        self._rand = rand or random.Random()

    def pick(self, key: int) -> EndpointPool | None:
        eps = self._endpoints
        n = len(eps)
        if n == 0:
            return None
        if n == 1:
            return eps[0]
        a = eps[self._rand.randrange(n)]
        b = eps[self._rand.randrange(n)]
        return a if a.active_requests <= b.active_requests else b


class Random:
    __slots__ = ("_endpoints", "_rand")

    def __init__(
        self, endpoints: Sequence[EndpointPool], rand: random.Random | None = None
    ) -> None:
        self._endpoints = tuple(endpoints)
        self._rand = rand or random.Random()

    def pick(self, key: int) -> EndpointPool | None:
        eps = self._endpoints
        if not eps:
            return None
        return eps[self._rand.randrange(len(eps))]


class RingHash:
    """Envoy's ring hash: each endpoint gets ``ring_size / n`` points (at least one)."""

    __slots__ = ("_hashes", "_owners")

    def __init__(self, endpoints: Sequence[EndpointPool], ring_size: int = 1024) -> None:
        points: list[tuple[int, str, EndpointPool]] = []
        if endpoints:
            per_host = max(1, -(-ring_size // len(endpoints)))
            for ep in endpoints:
                for i in range(per_host):
                    points.append((hash_key(f"{ep.key}_{i}".encode()), ep.key, ep))
        points.sort(key=lambda p: (p[0], p[1]))
        self._hashes = [p[0] for p in points]
        self._owners = [p[2] for p in points]

    def pick(self, key: int) -> EndpointPool | None:
        owners = self._owners
        if not owners:
            return None
        i = bisect_left(self._hashes, key)
        return owners[i if i < len(owners) else 0]


def make_balancer(
    policy: str, endpoints: Sequence[EndpointPool], ring_size: int | None = None
) -> Balancer:
    """``ring_size`` set means consistent hashing, whatever ``policy`` says."""
    if ring_size is not None:
        return RingHash(endpoints, ring_size)
    if policy == "LEAST_REQUEST":
        return LeastRequest(endpoints)
    if policy == "RANDOM":
        return Random(endpoints)
    return RoundRobin(endpoints)
