"""One downstream connection: the socket-facing protocol that every listener uses.

:class:`DownstreamConnection` is the ``asyncio.Protocol``. It picks the protocol driver
(HTTP/1.1, or HTTP/2 from the ALPN or the client preface), keeps write-side flow control,
enforces the header and idle timeouts, counts itself against the listener's connection limit
and drains on request. :class:`ConnectionTracker` holds a listener's connections and sweeps
their timeouts once a second, so no per-request timer is needed.

Called by ``gateway.transport.listener``; drives ``http1_server`` and ``http2_server``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol, cast

from gateway.codec.http1_wire import simple_response
from gateway.config.snapshot import Limits
from gateway.transport.http1_server import H1ServerConnection
from gateway.transport.http2_server import H2ServerConnection
from gateway.transport.streams import DownstreamInfo, RequestHandlerFactory, TunnelSink

log = logging.getLogger("isthmus.transport")

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_SWEEP_INTERVAL_S = 1.0


class ConnectionEvents(Protocol):
    """Per-connection counters the telemetry layer implements."""

    def connection_opened(self, port: int) -> None: ...

    def connection_closed(self, port: int, rx: int, tx: int) -> None: ...

    def connection_rejected(self, port: int, reason: str) -> None: ...


class TrackedConnection(Protocol):
    """What the tracker needs of a connection: HTTP ones and TLS passthrough ones alike."""

    bytes_in: int
    bytes_out: int

    def check_timeouts(self, now: float) -> None: ...

    def drain(self) -> None: ...

    def abort(self) -> None: ...


class ConnectionTracker:
    """The live connections of one listening port, and their timeouts."""

    def __init__(self, port: int, limits: Limits, events: ConnectionEvents) -> None:
        self.port = port
        self.limits = limits
        self.events = events
        self.connections: set[TrackedConnection] = set()
        self.draining = False
        self._sweeper: asyncio.TimerHandle | None = None
        self._idle_waiters: list[asyncio.Future[None]] = []

    def admit(self, conn: TrackedConnection) -> bool:
        if len(self.connections) >= self.limits.max_connections_per_listener or self.draining:
            self.events.connection_rejected(self.port, "overflow")
            return False
        self.connections.add(conn)
        self.events.connection_opened(self.port)
        if self._sweeper is None:
            self._schedule()
        return True

    def release(self, conn: TrackedConnection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self.events.connection_closed(self.port, conn.bytes_in, conn.bytes_out)
        if not self.connections:
            for w in self._idle_waiters:
                if not w.done():
                    w.set_result(None)
            self._idle_waiters.clear()

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(_SWEEP_INTERVAL_S, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = time.monotonic()
        for conn in list(self.connections):
            conn.check_timeouts(now)
        if self.connections:
            self._schedule()

    def drain(self) -> None:
        """Stop new requests on every connection; idle ones close now."""
        self.draining = True
        for conn in list(self.connections):
            conn.drain()

    async def wait_closed(self) -> None:
        if not self.connections:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle_waiters.append(fut)
        await fut

    def abort_all(self) -> None:
        for conn in list(self.connections):
            conn.abort()

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


class DownstreamConnection(asyncio.Protocol):
    """The protocol object asyncio gives each accepted socket."""

    def __init__(
        self,
        tracker: ConnectionTracker,
        factory: RequestHandlerFactory,
        limits: Limits,
        *,
        tls: bool = False,
        h2_enabled: bool = True,
        on_tls_connection: Callable[[DownstreamConnection], None] | None = None,
    ) -> None:
        # process-level
        self.tracker = tracker
        self.factory = factory
        self.limits = limits
        self.tls = tls
        self.h2_enabled = h2_enabled
        # connection-level
        self.transport: asyncio.Transport | None = None
        self.driver: H1ServerConnection | H2ServerConnection | None = None
        self.info = DownstreamInfo(listener_port=tracker.port, remote_address="", remote_port=0)
        self.write_paused = False
        self.read_paused = False
        self.bytes_in = 0
        self.bytes_out = 0
        self._preface = b""
        self._closed = False
        self._tunnel: TunnelSink | None = None
        now = time.monotonic()
        self._awaiting_head = True
        self._wait_started = now
        self._first_byte_at: float | None = None
        self._first_request = True
        # Called after a TLS handshake (mTLS peer identification); may abort.
        self._on_tls = on_tls_connection

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t = cast(asyncio.Transport, transport)  # uvloop's transports are no subclasses
        self.transport = t
        if not self.tracker.admit(self):
            self._closed = True
            t.abort()
            return
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.info.remote_address, self.info.remote_port = str(peer[0]), int(peer[1])
        t.set_write_buffer_limits(high=self.limits.stream_buffer_bytes)
        if self.tls:
            self.info.tls = True
            ssl_obj = transport.get_extra_info("ssl_object")
            alpn = ssl_obj.selected_alpn_protocol() if ssl_obj is not None else None
            self.info.alpn = alpn
            self.info.sni = getattr(ssl_obj, "isthmus_sni", None) if ssl_obj else None
            on_tls = self._on_tls
            if on_tls is not None:
                on_tls(self)
                if self._closed:
                    return
            if alpn == "h2":
                self._use_h2()
            else:
                self._use_h1()
        if self.tracker.draining:
            self.drain()

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        driver = self.driver
        if driver is not None:
            if self._awaiting_head and self._first_byte_at is None:
                self._first_byte_at = time.monotonic()
            driver.data_received(data)
            return
        if self._first_byte_at is None:
            self._first_byte_at = time.monotonic()
        # Plain listener: HTTP/2 with prior knowledge starts with the preface.
        buf = self._preface + data
        if len(buf) < len(H2_PREFACE) and H2_PREFACE.startswith(buf):
            self._preface = buf
            return
        self._preface = b""
        if self.h2_enabled and buf.startswith(H2_PREFACE):
            self._use_h2()
        else:
            self._use_h1()
        assert self.driver is not None
        self.driver.data_received(buf)

    def eof_received(self) -> bool | None:
        if self.driver is not None:
            self.driver.eof_received()
        return self._tunnel is not None  # keep the write side open for a half-closed tunnel

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self.driver is not None:
            self.driver.connection_lost()
        self.tracker.release(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.driver is not None:
            self.driver.writable()

    # -- driver selection ----------------------------------------------------------------------

    def _use_h1(self) -> None:
        self.info.protocol = "http"
        self.driver = H1ServerConnection(
            self,
            self.factory,
            self.info,
            max_header_bytes=self.limits.max_header_bytes,
            scheme="https" if self.tls else "http",
        )

    def _use_h2(self) -> None:
        self.info.protocol = "http2"
        self._awaiting_head = False
        self.driver = H2ServerConnection(
            self, self.factory, self.info, self.limits, scheme="https" if self.tls else "http"
        )
        self.driver.start()

    # -- used by the drivers -------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._closed or self.transport is None:
            return
        self.bytes_out += len(data)
        self.transport.write(data)

    def pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None and not self._closed:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self.transport is not None and not self._closed:
            self.read_paused = False
            self.transport.resume_reading()

    def headers_complete(self) -> None:
        self._awaiting_head = False
        self._first_byte_at = None

    def request_finished(self) -> None:
        """An HTTP/1.1 response is complete: the idle wait for the next request starts."""
        self._awaiting_head = True
        self._first_request = False
        self._wait_started = time.monotonic()
        self._first_byte_at = None

    def close_after_write(self) -> None:
        if self.transport is not None and not self._closed:
            self._closed = True
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self._closed = True
            self.transport.abort()

    def count_rejection(self, status: int, reason: str) -> None:
        self.tracker.events.connection_rejected(self.tracker.port, f"{status} {reason}")

    def tunnel_started(self) -> None:
        self._awaiting_head = False

    # -- TunnelSource (raw bytes after an Upgrade) ---------------------------------------------

    def write_eof(self) -> None:
        if self.transport is None or self._closed:
            return
        if self.transport.can_write_eof():
            self.transport.write_eof()
        else:
            # TLS cannot half-close: the other side has finished, so finish this one too.
            self.close_after_write()

    def close(self) -> None:
        self.close_after_write()

    # -- timeouts and drain --------------------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        driver = self.driver
        limits = self.limits
        if isinstance(driver, H2ServerConnection):
            driver.check_timeouts(now)
            return
        if not self._awaiting_head:
            return
        if self._first_byte_at is not None or self._first_request:
            started = self._first_byte_at if self._first_byte_at is not None else self._wait_started
            if now - started > limits.header_timeout_s:
                if isinstance(driver, H1ServerConnection):
                    driver.reject_timeout()
                else:
                    self.write(simple_response(408, b"", close=True))
                    self.close_after_write()
        elif now - self._wait_started > limits.idle_timeout_s:
            self.close_after_write()

    def drain(self) -> None:
        if self.driver is None:
            self.close_after_write()
        else:
            self.driver.drain()
