"""Connection pools: one :class:`EndpointPool` per upstream endpoint.

The shape follows httpcore: the pool's state is its named collections (idle HTTP/1.1
connections, HTTP/2 connections), decisions (``try_stream``) are synchronous and do no I/O,
and connecting is a separate awaitable step. HTTP/1.1 connections carry one request each and
come back to ``idle`` when reusable; HTTP/2 connections are shared until the peer's
MAX_CONCURRENT_STREAMS, after which another one is opened. ``repr`` is meant to be read.

Connections count against the cluster's :class:`~gateway.upstream.circuit.CircuitBreaker`;
at ``maxConnections`` a request waits for capacity instead of connecting. The pool also
carries the endpoint's health as outlier detection and active health checks see it, and its
locality, which the cluster's selection reads.

Called by the proxy's exchange through ``gateway.upstream.cluster``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.config.snapshot import ConnectionPool
from gateway.upstream.circuit import CircuitBreaker
from gateway.upstream.errors import ConnectFailure
from gateway.upstream.http1 import H1UpstreamConnection
from gateway.upstream.http2 import H2UpstreamConnection
from gateway.upstream.stream import UpstreamHandler, UpstreamStream
from gateway.upstream.tls import ClusterTls


class EndpointPool:
    """The connections to one ``address:port``."""

    def __init__(
        self,
        address: str,
        port: int,
        *,
        protocol: str,
        connect_timeout_s: float,
        buffer_bytes: int = 256 * 1024,
        max_idle: int = 1024,
        breaker: CircuitBreaker | None = None,
        max_requests_per_connection: int = 0,
    ) -> None:
        self.address = address
        self.port = port
        self.protocol = protocol
        self.connect_timeout_s = connect_timeout_s
        self.buffer_bytes = buffer_bytes
        self.max_idle = max_idle
        self.breaker = breaker if breaker is not None else CircuitBreaker(ConnectionPool())
        self.max_requests_per_connection = max_requests_per_connection
        # TLS origination (Cluster.tls), set by the cluster manager; None: plaintext.
        self.tls: ClusterTls | None = None
        # Requests in flight to this endpoint: the least-request balancer reads it.
        self.active_requests = 0
        # Where it is and what runs there (set by the cluster from the snapshot endpoint).
        self.locality: tuple[str, str, str] = ("", "", "")
        self.labels: dict[str, str] = {}
        self.workload = ""
        # Health: EndpointSlice conditions, active health checks, outlier detection.
        self.usable = True
        self.hc_healthy = True
        self.ejected_until = 0.0
        self.ejection_multiplier = 0
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.idle: list[H1UpstreamConnection] = []
        self.h2: list[H2UpstreamConnection] = []
        self._h2_connecting: asyncio.Future[H2UpstreamConnection] | None = None
        self.closed = False

    @property
    def key(self) -> str:
        return f"{self.address}:{self.port}"

    def __repr__(self) -> str:
        if self.protocol == "h2c":
            streams = sum(len(c.streams) for c in self.h2)
            return (
                f"<EndpointPool {self.key} h2c [Requests: {self.active_requests} active | "
                f"Connections: {len(self.h2)}, streams {streams}]>"
            )
        return (
            f"<EndpointPool {self.key} http1 [Requests: {self.active_requests} active | "
            f"Connections: {len(self.idle)} idle]>"
        )

    # -- decisions (no I/O) ------------------------------------------------------------------

    def try_stream(self, handler: UpstreamHandler) -> tuple[UpstreamStream, bool] | None:
        """A stream on an existing connection, or None when a new connection is needed.
        The flag says whether the connection was reused (it may have gone stale)."""
        if self.protocol == "h2c":
            for h2conn in self.h2:
                if h2conn.can_open_stream():
                    return h2conn.open_stream(handler), h2conn.reused > 1
            return None
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.is_available():
                return conn.bind(handler), True
        return None

    # -- I/O -----------------------------------------------------------------------------------

    async def connect_stream(self, handler: UpstreamHandler) -> UpstreamStream:
        """Open a connection (or wait for one being opened) and start a stream on it."""
        if self.protocol == "h2c":
            while True:
                fut = self._h2_connecting
                if fut is not None:
                    await asyncio.shield(fut)
                else:
                    conn = await self._connect_h2()
                    return conn.open_stream(handler)
                got = self.try_stream(handler)
                if got is not None:
                    return got[0]
        while not self.breaker.can_connect():
            got = self.try_stream(handler)
            if got is not None:
                return got[0]
            await self._wait_for_capacity()
        conn1 = await self._connect(
            lambda: H1UpstreamConnection(
                self._on_idle,
                self.buffer_bytes,
                self.breaker.connection_closed,
                self.max_requests_per_connection,
            )
        )
        assert isinstance(conn1, H1UpstreamConnection)
        return conn1.bind(handler)

    async def _wait_for_capacity(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.breaker.waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.breaker.wake()  # pass the wake-up on
            raise

    async def _connect_h2(self) -> H2UpstreamConnection:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[H2UpstreamConnection] = loop.create_future()
        self._h2_connecting = fut
        try:
            while not self.breaker.can_connect():
                await self._wait_for_capacity()
            conn = await self._connect(
                lambda: H2UpstreamConnection(
                    self._on_h2_change, self.buffer_bytes, self.max_requests_per_connection
                )
            )
            assert isinstance(conn, H2UpstreamConnection)
            # Honour the server's SETTINGS (MAX_CONCURRENT_STREAMS) before the first stream.
            async with asyncio.timeout(self.connect_timeout_s):
                await conn.ready
            self.h2.append(conn)
            fut.set_result(conn)
            return conn
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(
                    exc if isinstance(exc, Exception) else ConnectFailure("cancelled")
                )
                fut.exception()  # consumed here; waiters re-raise their own
            raise
        finally:
            self._h2_connecting = None

    async def _connect(
        self, factory: Callable[[], H1UpstreamConnection | H2UpstreamConnection]
    ) -> H1UpstreamConnection | H2UpstreamConnection:
        loop = asyncio.get_running_loop()
        tls = self.tls
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if tls is None:
                    transport, proto = await loop.create_connection(
                        factory, self.address, self.port
                    )
                else:
                    transport, proto = await loop.create_connection(
                        factory,
                        self.address,
                        self.port,
                        ssl=tls.context(),
                        server_hostname=tls.server_hostname,
                    )
        except TimeoutError:
            # Envoy counts a connect timeout as a connection failure: 503, flag UF.
            raise ConnectFailure(f"connect to {self.key} timed out") from None
        except OSError as exc:
            if tls is not None:
                raise tls.failure(self.key, exc) from None
            raise ConnectFailure(f"connect to {self.key} failed: {exc.strerror or exc}") from None
        assert isinstance(proto, H1UpstreamConnection | H2UpstreamConnection)
        self.breaker.connection_opened()
        if tls is not None:
            problem = tls.check(transport.get_extra_info("ssl_object"))
            if problem is not None:
                self._refuse(transport, proto)
                raise ConnectFailure(f"TLS peer {self.key} refused: {problem}")
        return proto

    def _refuse(
        self, transport: asyncio.Transport, proto: H1UpstreamConnection | H2UpstreamConnection
    ) -> None:
        """Close a connection to a server that failed the TLS checks. An HTTP/1.1 one gives
        its breaker count back when it closes; an HTTP/2 one is not pooled yet, so here."""
        transport.abort()
        if isinstance(proto, H2UpstreamConnection):
            self.breaker.connection_closed()
            proto.ready.add_done_callback(_consume)

    # -- connection callbacks ------------------------------------------------------------------

    def _on_idle(self, conn: H1UpstreamConnection) -> None:
        if self.closed or len(self.idle) >= self.max_idle:
            conn.close()
        else:
            self.idle.append(conn)
            self.breaker.wake()

    def _on_h2_change(self, conn: H2UpstreamConnection) -> None:
        if conn.closed:
            if conn in self.h2:
                self.h2.remove(conn)
                self.breaker.connection_closed()
        elif self.breaker.waiters and conn.can_open_stream():
            self.breaker.wake()

    # -- maintenance -----------------------------------------------------------------------------

    def sweep(self, now: float, idle_timeout_s: float) -> None:
        keep = []
        for conn in self.idle:
            if conn.closed:
                continue
            if conn.has_expired(now, idle_timeout_s):
                conn.close()
            else:
                keep.append(conn)
        self.idle = keep
        for h2c in list(self.h2):
            if h2c.has_expired(now, idle_timeout_s) or (h2c.is_idle() and h2c.is_spent()):
                h2c.close()
                if h2c in self.h2:
                    self.h2.remove(h2c)
                    self.breaker.connection_closed()

    def close(self) -> None:
        """Close idle connections now; busy ones close when their request ends."""
        self.closed = True
        for conn in self.idle:
            conn.close()
        self.idle.clear()
        for h2c in self.h2:
            if h2c.is_idle():
                h2c.close()


def _consume(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()
