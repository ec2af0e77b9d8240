"""The request observer: access log entries and trace spans for finished requests.

The engine installs one :class:`Observer` when the snapshot turns access logging or tracing
on (``ProxySettings`` ``telemetry``), and none otherwise, so a proxy without telemetry pays
nothing per request. The observer never writes or exports on the event loop: the access log
queues to its writer thread and the tracer batches to the OpenTelemetry SDK's exporter
thread.

Called by ``gateway.proxy.exchange`` (forwarded requests) and ``gateway.proxy.http`` (local
replies); built by ``gateway.proxy.engine``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from gateway.codec.messages import RequestHead
from gateway.config.snapshot import Node, Telemetry
from gateway.filters.base import LocalReply
from gateway.proxy.context import ServerSpanLike, TracerLike
from gateway.telemetry.access_log import (
    AccessLogEntry,
    AccessLogger,
    ensure_request_id,
    format_start_time,
)
from gateway.transport.streams import ServerStream

if TYPE_CHECKING:
    from gateway.proxy.exchange import Exchange

_NO_FLAGS = "-"


def protocol_name(request: RequestHead) -> str:
    return "HTTP/2" if request.version == "2" else f"HTTP/{request.version}"


def _logged_headers(request: RequestHead) -> tuple[str | None, str | None, str | None]:
    """``x-forwarded-for``, ``user-agent`` and ``x-request-id``, in one pass."""
    xff = agent = rid = None
    for k, v in request.headers:
        if k == b"x-forwarded-for":
            xff = v.decode("latin-1")
        elif k == b"user-agent":
            agent = v.decode("latin-1")
        elif k == b"x-request-id":
            rid = v.decode("latin-1")
    return xff, agent, rid


def build_observer(telemetry: Telemetry, node: Node) -> Observer | None:
    """The observer for a snapshot's telemetry settings, or None when everything is off.
    Raises ``AccessLogError`` for an access log file that cannot be opened and
    ``TracingConfigError`` for an unusable tracing configuration."""
    tracer: TracerLike | None = None
    if telemetry.tracing is not None:
        # The OpenTelemetry SDK and its exporters load only in proxies that trace.
        from gateway.telemetry.tracing import Tracer

        tracer = Tracer(telemetry.tracing, node)
    try:
        access_log = AccessLogger.from_config(telemetry.access_log)
    except Exception:
        if tracer is not None:
            tracer.shutdown()
        raise
    if access_log is None and tracer is None:
        return None
    return Observer(access_log, tracer)


class Observer:
    __slots__ = ("access_log", "tracer")

    def __init__(self, access_log: AccessLogger | None, tracer: TracerLike | None = None) -> None:
        self.access_log = access_log
        self.tracer = tracer

    def request_started(self, stream: ServerStream, peer: str | None) -> ServerSpanLike | None:
        """On the request path, before it goes upstream: make sure it has an
        ``x-request-id`` (generated when absent) so the upstream and the log agree, and
        start its server span."""
        request = stream.request
        ensure_request_id(request.headers)
        tracer = self.tracer
        if tracer is None:
            return None
        info = stream.info
        return tracer.start_server(request, info.remote_address, peer,
                                   peer_port=info.remote_port)  # fmt: skip

    def exchange_done(self, exchange: Exchange, status: int, duration_ms: float) -> None:
        flags = exchange.flags or _NO_FLAGS
        span = exchange.span
        if span is not None:
            span.end(status, flags, cluster=exchange.cluster_name or None)
        log = self.access_log
        if log is None or not log.wants(status, flags):
            return
        stream = exchange.stream
        request = stream.request
        pool = exchange.pool
        log.emit(
            self._entry(
                stream,
                status,
                flags,
                duration_ms,
                bytes_received=exchange.request_bytes,
                bytes_sent=exchange.response_bytes,
                upstream_host=f"{pool.address}:{pool.port}" if pool is not None else None,
                upstream_cluster=exchange.cluster_name or None,
                attempts=exchange.attempt,
                peer=exchange.ctx.peer_principal,
                request=request,
                trace_id=span.trace_id if span is not None else None,
            )
        )

    def local_done(self, stream: ServerStream, reply: LocalReply, duration_ms: float) -> None:
        """A request the proxy answered itself (no route, a filter's reply): its span
        starts and ends here."""
        flags = reply.flag or _NO_FLAGS
        trace_id = None
        tracer = self.tracer
        if tracer is not None:
            info = stream.info
            span = tracer.start_server(stream.request, info.remote_address, None,
                                       peer_port=info.remote_port)  # fmt: skip
            if span is not None:
                span.end(reply.status, flags)
                trace_id = span.trace_id
        log = self.access_log
        if log is None or not log.wants(reply.status, flags):
            return
        log.emit(
            self._entry(
                stream,
                reply.status,
                flags,
                duration_ms,
                bytes_received=0,
                bytes_sent=len(reply.body),
                upstream_host=None,
                upstream_cluster=None,
                attempts=0,
                peer=None,
                request=stream.request,
                trace_id=trace_id,
            )
        )

    @staticmethod
    def _entry(
        stream: ServerStream,
        status: int,
        flags: str,
        duration_ms: float,
        *,
        bytes_received: int,
        bytes_sent: int,
        upstream_host: str | None,
        upstream_cluster: str | None,
        attempts: int,
        peer: str | None,
        request: RequestHead,
        trace_id: str | None,
    ) -> AccessLogEntry:
        info = stream.info
        xff, agent, rid = _logged_headers(request)
        return AccessLogEntry(
            start_time=format_start_time(time.time() - duration_ms / 1000.0),
            method=request.method,
            path=request.path,
            protocol=protocol_name(request),
            response_code=status,
            response_flags=flags,
            bytes_received=bytes_received,
            bytes_sent=bytes_sent,
            duration=int(duration_ms),
            x_forwarded_for=xff,
            user_agent=agent,
            request_id=rid,
            authority=request.authority,
            upstream_host=upstream_host,
            upstream_cluster=upstream_cluster,
            downstream_remote_address=f"{info.remote_address}:{info.remote_port}",
            requested_server_name=info.sni,
            upstream_request_attempt_count=attempts,
            trace_id=trace_id,
            downstream_peer_principal=peer,
        )

    def close(self) -> None:
        """Flush and stop (blocking: run it off the event loop)."""
        if self.access_log is not None:
            self.access_log.close(timeout_s=5.0)
        if self.tracer is not None:
            self.tracer.shutdown()
