"""Downstream mTLS on a listening port: STRICT or PERMISSIVE (Istio PeerAuthentication).

The engine gives a :class:`~gateway.transport.listener.PortListener` an :class:`MtlsServing`
for every HTTP port whose snapshot binding has ``mtls`` set. Instead of ``create_server``,
the port accepts with an :class:`MtlsAcceptor`:

1. **Detect.** Each accepted socket waits (at most the header timeout) until its first bytes
   arrive and peeks at them without reading (``MSG_PEEK``): a TLS ClientHello starts with a
   handshake record, ``0x16 0x03``; a plaintext HTTP/1.1 request line or HTTP/2 preface
   never does. STRICT closes plaintext connections; PERMISSIVE serves them as plain HTTP.
2. **Handshake.** A TLS socket is handed to the event loop's own TLS
   (``connect_accepted_socket(ssl=...)``, native in uvloop) with the identity's listening
   context: our SVID, a client certificate required and its chain verified to the bundle
   (validity included), ALPN ``h2``/``http/1.1``. Since nothing was read, the loop's TLS sees
   the whole ClientHello.
3. **Identify.** When the handshake is done, :meth:`MtlsServing.on_tls_connection` applies
   the X.509-SVID leaf rules and the trust domain to the peer certificate and puts the peer's
   SPIFFE ID (``spiffe://...``) on the connection's ``DownstreamInfo.peer_principal``, from
   where every request's ``RequestContext.peer_principal`` is set. A refused peer is closed
   before any request is read.

Refusals are counted in ``isthmus_downstream_rejections_total`` with a short reason
(``mtls plaintext``, ``mtls handshake``, ``mtls peer <rule>``) and logged at INFO with the
detail. Plaintext ports never come here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.config.snapshot import MtlsMode
from gateway.transport.connection import ConnectionEvents, DownstreamConnection
from gateway.transport.mtls_identity import WorkloadIdentity
from pki.errors import PkiError

log = logging.getLogger("isthmus.mtls")

TLS_HANDSHAKE = 0x16
TLS_MAJOR = 0x03
_ACCEPT_BATCH = 64

Spawn = Callable[[Coroutine[Any, Any, None]], object]
# Makes the protocol of one accepted connection; the flag says whether it speaks TLS.
ProtocolFactory = Callable[[bool], asyncio.Protocol]


def looks_like_tls(head: bytes) -> bool:
    """Whether the first bytes of a connection start a TLS handshake record."""
    return bool(head) and head[0] == TLS_HANDSHAKE and (len(head) < 2 or head[1] == TLS_MAJOR)


class MtlsServing:
    """How one port serves mTLS: the mode, the identity, and the peer check."""

    __slots__ = ("identity", "mode", "spawn")

    def __init__(self, identity: WorkloadIdentity, mode: MtlsMode, spawn: Spawn) -> None:
        self.identity = identity
        self.mode = mode
        self.spawn = spawn

    def on_tls_connection(self, conn: DownstreamConnection) -> None:
        """Called by the connection right after the handshake: identify or close."""
        transport = conn.transport
        ssl_object = None if transport is None else transport.get_extra_info("ssl_object")
        try:
            spiffe_id = self.identity.peer_id(ssl_object)
        except PkiError as exc:
            tracker = conn.tracker
            tracker.events.connection_rejected(tracker.port, f"mtls peer {exc.rule}")
            log.info(
                "port %d: refused the mTLS peer %s:%d: %s",
                tracker.port,
                conn.info.remote_address,
                conn.info.remote_port,
                exc,
            )
            conn.abort()
            return
        conn.info.peer_principal = spiffe_id.uri

    def start(
        self,
        sock: socket.socket,
        factory: ProtocolFactory,
        events: ConnectionEvents,
        port: int,
        *,
        handshake_timeout_s: float,
        max_pending: int,
    ) -> MtlsAcceptor:
        acceptor = MtlsAcceptor(
            self, sock, factory, events, port,
            handshake_timeout_s=handshake_timeout_s, max_pending=max_pending,
        )  # fmt: skip
        acceptor.start()
        return acceptor

    def __repr__(self) -> str:
        return f"<MtlsServing {self.mode} as {self.identity.spiffe_id}>"


class MtlsAcceptor:
    """The accept loop of one mTLS port (see the module docstring)."""

    def __init__(
        self,
        serving: MtlsServing,
        sock: socket.socket,
        factory: ProtocolFactory,
        events: ConnectionEvents,
        port: int,
        *,
        handshake_timeout_s: float,
        max_pending: int,
    ) -> None:
        self.serving = serving
        self.sock = sock
        self.factory = factory
        self.events = events
        self.port = port
        self.handshake_timeout_s = handshake_timeout_s
        self.max_pending = max_pending
        self.loop = asyncio.get_running_loop()
        # Accepted sockets whose first bytes have not come yet, with their timeout.
        self.pending: dict[socket.socket, asyncio.TimerHandle] = {}
        self.closed = False

    def start(self) -> None:
        self.loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting and drop connections that have not started; the rest drain."""
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for conn in list(self.pending):
            self._drop(conn)

    # -- accept and detect ------------------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: try again at the next readiness
                log.warning("port %d: accept failed: %s", self.port, exc)
                return
            if len(self.pending) >= self.max_pending:
                self.events.connection_rejected(self.port, "overflow")
                conn.close()
                continue
            conn.setblocking(False)
            timer = self.loop.call_later(self.handshake_timeout_s, self._expire, conn)
            self.pending[conn] = timer
            self.loop.add_reader(conn.fileno(), self._first_bytes, conn)

    def _first_bytes(self, conn: socket.socket) -> None:
        try:
            head = conn.recv(2, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        if not head:
            self._drop(conn)
            return
        tls = looks_like_tls(head)
        if len(head) < 2 and tls:
            return  # one byte of a handshake: wait for the second
        self._forget(conn)
        if not tls and self.serving.mode == "STRICT":
            self.events.connection_rejected(self.port, "mtls plaintext")
            log.info("port %d: refused a plaintext connection (mTLS STRICT)", self.port)
            conn.close()
            return
        self.serving.spawn(self._serve(conn, tls))

    async def _serve(self, conn: socket.socket, tls: bool) -> None:
        try:
            if tls:
                await self.loop.connect_accepted_socket(
                    lambda: self.factory(True),
                    conn,
                    ssl=self.serving.identity.listening_context(),
                    ssl_handshake_timeout=self.handshake_timeout_s,
                )
            else:
                await self.loop.connect_accepted_socket(lambda: self.factory(False), conn)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self.events.connection_rejected(self.port, "mtls handshake")
            log.info("port %d: TLS handshake failed: %s", self.port, _describe(exc))
            conn.close()

    def _expire(self, conn: socket.socket) -> None:
        if conn in self.pending:
            self.events.connection_rejected(self.port, "mtls timeout")
            self._drop(conn)

    def _forget(self, conn: socket.socket) -> None:
        timer = self.pending.pop(conn, None)
        if timer is not None:
            timer.cancel()
        try:
            self.loop.remove_reader(conn.fileno())
        except (ValueError, OSError):
            pass

    def _drop(self, conn: socket.socket) -> None:
        self._forget(conn)
        conn.close()

    def __repr__(self) -> str:
        return f"<MtlsAcceptor port={self.port} {self.serving.mode} pending={len(self.pending)}>"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
