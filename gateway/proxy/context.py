"""What every exchange needs from the engine, as one small object.

Kept apart from ``engine`` so that the exchange, the mirror and the HTTP handler depend on a
narrow surface rather than the whole engine.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gateway.codec.messages import RequestHead
from gateway.config.snapshot import Limits
from gateway.filters.base import LocalReply
from gateway.proxy.tasks import Supervisor
from gateway.telemetry.stats import Stats
from gateway.transport.streams import ServerStream
from gateway.upstream.cluster import ClusterManager

if TYPE_CHECKING:
    from gateway.proxy.exchange import Exchange


class ClientSpanLike(Protocol):
    """One upstream try's span (``gateway.telemetry.tracing.ClientSpan``)."""

    def inject(self, headers: list[tuple[bytes, bytes]]) -> None: ...

    def end(self, status_code: int | None, error: str | None = None) -> None: ...


class ServerSpanLike(Protocol):
    """A request's span (``gateway.telemetry.tracing.ServerSpan``). The proxy names these
    protocols instead of the classes so that the OpenTelemetry SDK is imported only by
    proxies that trace."""

    @property
    def trace_id(self) -> str: ...

    def start_client(
        self,
        request: RequestHead,
        cluster: str,
        address: str | None = None,
        port: int | None = None,
        attempt: int = 0,
    ) -> ClientSpanLike: ...

    def end(
        self, status_code: int, response_flags: str = "-", *, cluster: str | None = None
    ) -> None: ...


class TracerLike(Protocol):
    """``gateway.telemetry.tracing.Tracer`` as the proxy uses it."""

    def start_server(
        self,
        request: RequestHead,
        peer_address: str | None = None,
        peer_principal: str | None = None,
        *,
        peer_port: int | None = None,
    ) -> ServerSpanLike | None: ...

    def shutdown(self) -> None: ...


class RequestObserver(Protocol):
    """Sees every request: the access log and traces hang off it
    (``gateway.proxy.observe``)."""

    def request_started(self, stream: ServerStream, peer: str | None) -> ServerSpanLike | None: ...

    def exchange_done(self, exchange: Exchange, status: int, duration_ms: float) -> None: ...

    def local_done(self, stream: ServerStream, reply: LocalReply, duration_ms: float) -> None: ...


@dataclass(slots=True)
class EngineContext:
    loop: asyncio.AbstractEventLoop
    clusters: ClusterManager
    supervisor: Supervisor
    stats: Stats
    limits: Limits
    # Set when access logging or tracing is on; None keeps the hot path free of both.
    observer: RequestObserver | None = None
