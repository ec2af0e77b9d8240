"""Load balancers: choose an endpoint pool for a request. Pure code, no I/O.

``ROUND_ROBIN`` cycles through the endpoints; ``LEAST_REQUEST`` is Envoy's power of two
choices: draw two endpoints at random and take the one with fewer requests in flight.
Only endpoints that are ready and not terminating are candidates (the cluster filters them).

Called by ``gateway.upstream.cluster``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol

from gateway.upstream.pool import EndpointPool


class Balancer(Protocol):
    def pick(self) -> EndpointPool | None: ...


class RoundRobin:
    __slots__ = ("_endpoints", "_next")

    def __init__(self, endpoints: Sequence[EndpointPool]) -> None:
        self._endpoints = tuple(endpoints)
        # Start at a random offset so that workers do not all hit the same endpoint first.
        self._next = random.randrange(len(self._endpoints)) if self._endpoints else 0

    def pick(self) -> EndpointPool | None:
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

    def pick(self) -> EndpointPool | None:
        eps = self._endpoints
        n = len(eps)
        if n == 0:
            return None
        if n == 1:
            return eps[0]
        a = eps[self._rand.randrange(n)]
        b = eps[self._rand.randrange(n)]
        return a if a.active_requests <= b.active_requests else b


def make_balancer(policy: str, endpoints: Sequence[EndpointPool]) -> Balancer:
    if policy == "LEAST_REQUEST":
        return LeastRequest(endpoints)
    return RoundRobin(endpoints)
