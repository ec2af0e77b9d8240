"""TLS passthrough: route a TCP connection on its ClientHello's SNI, never decrypting.

:class:`PassthroughConnection` buffers the first TLS record, reads the SNI with
``gateway.codec.tls_sni``, asks its router for an upstream address, connects, replays the
buffered bytes and then pipes both directions with flow control. The east-west gateway will
reuse this for ``AUTO_PASSTHROUGH`` SNI routing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

from gateway.codec.tls_sni import MAX_CLIENT_HELLO, NEED_MORE, parse_client_hello
from gateway.transport.connection import ConnectionTracker

log = logging.getLogger("isthmus.passthrough")

# Resolves an SNI name to (cluster, connect coroutine) or None when no route matches.
Route = Callable[
    [str | None], tuple[str, Callable[[asyncio.Protocol], Awaitable[asyncio.Transport]]] | None
]
Spawn = Callable[[Coroutine[Any, Any, None]], object]


class _UpstreamSide(asyncio.Protocol):
    def __init__(self, down: PassthroughConnection) -> None:
        self.down = down
        self.transport: asyncio.Transport | None = None
        self.write_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t = cast(asyncio.Transport, transport)  # uvloop's transports are no subclasses
        self.transport = t

    def data_received(self, data: bytes) -> None:
        self.down.write(data)

    def eof_received(self) -> bool | None:
        self.down.upstream_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.down.close()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.down.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.down.resume_reading()


class PassthroughConnection(asyncio.Protocol):
    def __init__(self, tracker: ConnectionTracker, route: Route, spawn: Spawn) -> None:
        self.tracker = tracker
        self.route = route
        self.spawn = spawn
        self.transport: asyncio.Transport | None = None
        self.upstream: _UpstreamSide | None = None
        self._hello = b""
        self._closed = False
        self._opened = time.monotonic()
        self._eof_down = False
        self._eof_up = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.sni: str | None = None

    # TrackedConnection surface used by ConnectionTracker
    def check_timeouts(self, now: float) -> None:
        if self.upstream is None and now - self._opened > self.tracker.limits.header_timeout_s:
            self.close()

    def drain(self) -> None:
        if self.upstream is None:
            self.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.abort()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t = cast(asyncio.Transport, transport)  # uvloop's transports are no subclasses
        self.transport = t
        if not self.tracker.admit(self):
            self._closed = True
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        up = self.upstream
        if up is not None and up.transport is not None:
            up.transport.write(data)
            return
        self._hello += data
        try:
            sni = parse_client_hello(self._hello)
        except (ValueError, UnicodeDecodeError) as exc:
            self.tracker.events.connection_rejected(self.tracker.port, f"tls passthrough: {exc}")
            self.close()
            return
        if sni is NEED_MORE:
            if len(self._hello) > MAX_CLIENT_HELLO:
                self.close()
            return
        assert sni is None or isinstance(sni, str)
        self.sni = sni
        target = self.route(sni)
        if target is None:
            self.tracker.events.connection_rejected(self.tracker.port, "tls passthrough: no route")
            self.close()
            return
        assert self.transport is not None
        self.transport.pause_reading()
        self.spawn(self._connect(target[1]))

    async def _connect(
        self, connect: Callable[[asyncio.Protocol], Awaitable[asyncio.Transport]]
    ) -> None:
        side = _UpstreamSide(self)
        try:
            await connect(side)
        except (OSError, TimeoutError) as exc:
            log.info("passthrough connect failed: %s", exc)
            self.close()
            return
        if self._closed:
            if side.transport is not None:
                side.transport.close()
            return
        self.upstream = side
        assert side.transport is not None
        side.transport.write(self._hello)
        self._hello = b""
        if self._eof_down and side.transport.can_write_eof():
            side.transport.write_eof()
        if self.transport is not None:
            self.transport.resume_reading()

    def eof_received(self) -> bool | None:
        self._eof_down = True
        up = self.upstream
        if up is not None and up.transport is not None and up.transport.can_write_eof():
            up.transport.write_eof()
        if self._eof_up:
            self.close()
        return True

    def upstream_eof(self) -> None:
        self._eof_up = True
        if self.transport is not None and self.transport.can_write_eof():
            self.transport.write_eof()
        if self._eof_down:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        up = self.upstream
        if up is not None and up.transport is not None:
            up.transport.close()
        self.tracker.release(self)

    def pause_writing(self) -> None:
        up = self.upstream
        if up is not None and up.transport is not None:
            up.transport.pause_reading()

    def resume_writing(self) -> None:
        up = self.upstream
        if up is not None and up.transport is not None:
            up.transport.resume_reading()

    # used by the upstream side
    def write(self, data: bytes) -> None:
        if self.transport is not None and not self._closed:
            self.bytes_out += len(data)
            self.transport.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.resume_reading()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.transport is not None:
                self.transport.close()
        up = self.upstream
        if up is not None and up.transport is not None:
            up.transport.close()
