"""Listening sockets: one :class:`PortListener` per address and port of the snapshot.

Each worker process binds its own socket with ``SO_REUSEPORT``, so the kernel spreads
connections over the workers. A listener's request handler and TLS certificates can be
replaced while it runs (``update``): connections already open pick the new handler up at
their next request. ``drain`` stops accepting and asks every connection to finish.

Called by the proxy engine when it applies a snapshot.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from gateway.config.snapshot import Limits
from gateway.transport.connection import ConnectionEvents, ConnectionTracker, DownstreamConnection
from gateway.transport.mtls_listener import MtlsAcceptor, MtlsServing
from gateway.transport.streams import RequestHandlerFactory, ServerStream, StreamHandler
from gateway.transport.tls import ListenerTLS


def bind_socket(address: str, port: int, *, backlog: int = 1024) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((address, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Dispatch:
    """The handler a listener's connections call: it forwards to the current snapshot's."""

    __slots__ = ("target",)

    def __init__(self, target: RequestHandlerFactory) -> None:
        self.target = target

    def on_request(self, stream: ServerStream) -> StreamHandler:
        return self.target.on_request(stream)


class PortListener:
    def __init__(
        self,
        address: str,
        port: int,
        protocol: str,
        limits: Limits,
        events: ConnectionEvents,
        *,
        handler: RequestHandlerFactory | None = None,
        tls: ListenerTLS | None = None,
        make_protocol: Callable[[ConnectionTracker], asyncio.Protocol] | None = None,
        mtls: MtlsServing | None = None,
    ) -> None:
        self.address = address
        self.port = port
        self.protocol = protocol
        self.limits = limits
        self.tls = tls
        self.dispatch = Dispatch(handler) if handler is not None else None
        self.tracker = ConnectionTracker(port, limits, events)
        self._make_protocol = make_protocol
        self.sock: socket.socket | None = None
        self.server: asyncio.Server | None = None
        # mTLS ports (PeerAuthentication) accept through their own loop.
        self.mtls = mtls
        self._acceptor: MtlsAcceptor | None = None

    @property
    def mtls_mode(self) -> str | None:
        return self.mtls.mode if self.mtls is not None else None

    def bind(self) -> None:
        """Bind now (may raise OSError): done before a snapshot is committed."""
        self.sock = bind_socket(self.address, self.port)
        if self.port == 0:
            self.port = self.sock.getsockname()[1]
            self.tracker.port = self.port

    async def start(self) -> None:
        if self.sock is None:
            self.bind()
        assert self.sock is not None
        if self.mtls is not None:
            self._acceptor = self.mtls.start(
                self.sock, self._new_mtls_protocol, self.tracker.events, self.port,
                handshake_timeout_s=self.limits.header_timeout_s,
                max_pending=self.limits.max_connections_per_listener,
            )  # fmt: skip
            return
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            self._new_protocol,
            sock=self.sock,
            ssl=self.tls.context if self.tls is not None else None,
            ssl_handshake_timeout=self.limits.header_timeout_s if self.tls is not None else None,
        )

    def _new_protocol(self) -> asyncio.Protocol:
        if self._make_protocol is not None:
            return self._make_protocol(self.tracker)
        assert self.dispatch is not None
        return DownstreamConnection(
            self.tracker, self.dispatch, self.limits, tls=self.tls is not None
        )

    def _new_mtls_protocol(self, tls: bool) -> asyncio.Protocol:
        assert self.dispatch is not None and self.mtls is not None
        return DownstreamConnection(
            self.tracker,
            self.dispatch,
            self.limits,
            tls=tls,
            on_tls_connection=self.mtls.on_tls_connection if tls else None,
        )

    def update(
        self,
        handler: RequestHandlerFactory | None,
        tls: ListenerTLS | None,
        limits: Limits,
        make_protocol: Callable[[ConnectionTracker], asyncio.Protocol] | None = None,
    ) -> None:
        if handler is not None and self.dispatch is not None:
            self.dispatch.target = handler
        if tls is not None and self.tls is not None:
            self.tls.update(tls.current)
        if make_protocol is not None:
            self._make_protocol = make_protocol
        self.limits = limits
        self.tracker.limits = limits

    def stop_accepting(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
        elif self.server is not None:
            self.server.close()
        elif self.sock is not None:
            self.sock.close()

    async def drain(self, deadline_s: float) -> None:
        """Stop accepting, ask connections to finish, wait until they have or time is up."""
        self.stop_accepting()
        self.tracker.drain()
        try:
            async with asyncio.timeout(deadline_s):
                await self.tracker.wait_closed()
        except TimeoutError:
            self.tracker.abort_all()
        self.tracker.stop()
