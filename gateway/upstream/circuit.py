"""Circuit breakers: DestinationRule ``connectionPool`` limits on one cluster, Envoy-style.

One :class:`CircuitBreaker` per cluster name and worker. It outlives snapshots (the manager
hands the same object to a cluster's new incarnation and updates its limits), so that the
connections and requests in flight are still counted after a reload. Nothing here waits or
does I/O: the pool and the exchange ask and report, and an overflow is answered at once
with 503 and the response flag ``UO``.

- ``requests``: requests in flight to the cluster (``http2MaxRequests``; Envoy applies it to
  every protocol).
- ``pending``: requests waiting for a connection (``http1MaxPendingRequests``).
- ``connections``: open upstream connections (``tcp.maxConnections``); above it, requests
  wait for a connection to come free instead of opening one.
- ``retries``: retries in flight (``http.maxRetries``), besides the retry budget.

Called by ``gateway.upstream.pool`` and ``gateway.proxy.exchange``.
"""

from __future__ import annotations

import asyncio
from collections import deque

from gateway.config.snapshot import ConnectionPool


class CircuitBreaker:
    __slots__ = ("config", "connections", "ejections", "overflows", "pending", "requests",
                 "retries", "retries_total", "waiters")  # fmt: skip

    def __init__(self, config: ConnectionPool) -> None:
        self.config = config
        self.connections = 0
        self.pending = 0
        self.requests = 0
        self.retries = 0
        self.overflows = 0  # requests refused with UO
        self.retries_total = 0
        self.ejections = 0  # outlier ejections, counted here so that reloads keep the count
        # Requests waiting for connection capacity, oldest first.
        self.waiters: deque[asyncio.Future[None]] = deque()

    # -- requests --------------------------------------------------------------------------

    def admit_request(self) -> bool:
        if self.requests >= self.config.http2_max_requests:
            self.overflows += 1
            return False
        self.requests += 1
        return True

    def admit_pending(self) -> bool:
        if self.pending >= self.config.http1_max_pending_requests:
            self.overflows += 1
            return False
        self.pending += 1
        return True

    # -- retries -------------------------------------------------------------------------------

    def admit_retry(self, budget_percent: float, min_concurrency: int) -> bool:
        """A retry may start when ``maxRetries`` and the retry budget both allow it. The
        budget lets retries in flight reach ``budget_percent`` of the requests in flight,
        and always at least ``min_concurrency`` (Envoy's ``retry_budget``)."""
        if self.retries >= self.config.max_retries:
            return False
        budget = max(float(min_concurrency), self.requests * budget_percent / 100.0)
        if self.retries >= budget:
            return False
        self.retries += 1
        self.retries_total += 1
        return True

    def retry_done(self) -> None:
        self.retries -= 1

    # -- connections -----------------------------------------------------------------------

    def can_connect(self) -> bool:
        return self.connections < self.config.max_connections

    def connection_opened(self) -> None:
        self.connections += 1

    def connection_closed(self) -> None:
        self.connections -= 1
        self.wake()

    def wake(self) -> None:
        """Capacity came free (a connection closed or went idle): let one waiter look."""
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
