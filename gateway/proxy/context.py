"""What every exchange needs from the engine, as one small object.

Kept apart from ``engine`` so that the exchange, the mirror and the HTTP handler depend on a
narrow surface rather than the whole engine.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gateway.config.snapshot import Limits
from gateway.proxy.tasks import Supervisor
from gateway.telemetry.stats import Stats
from gateway.upstream.cluster import ClusterManager

if TYPE_CHECKING:
    from gateway.proxy.exchange import Exchange


class RequestObserver(Protocol):
    """Sees every finished request: the access log and traces hang off it."""

    def exchange_done(self, exchange: Exchange, status: int, duration_ms: float) -> None: ...


@dataclass(slots=True)
class EngineContext:
    loop: asyncio.AbstractEventLoop
    clusters: ClusterManager
    supervisor: Supervisor
    stats: Stats
    limits: Limits
    # Set when access logging or tracing is on; None keeps the hot path free of both.
    observer: RequestObserver | None = None
