"""What every exchange needs from the engine, as one small object.

Kept apart from ``engine`` so that the exchange, the mirror and the HTTP handler depend on a
narrow surface rather than the whole engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config.snapshot import Limits
from gateway.proxy.tasks import Supervisor
from gateway.telemetry.stats import RequestKey, Stats
from gateway.upstream.cluster import ClusterManager


@dataclass(slots=True)
class EngineContext:
    loop: asyncio.AbstractEventLoop
    clusters: ClusterManager
    supervisor: Supervisor
    stats: Stats
    limits: Limits
    # Called once per finished request with its stats key and figures; the access log will
    # hang off the same call.
    on_complete: Callable[[RequestKey, float, int, int], None] | None = None
