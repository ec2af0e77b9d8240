"""Upstream HTTP/1.1: a keep-alive connection that carries one request at a time.

:class:`H1UpstreamConnection` is both the ``asyncio.Protocol`` and the
:class:`~gateway.upstream.stream.UpstreamStream` of its current request. When a response and
its request have both ended on a reusable connection, it hands itself back to its pool. A
``101 Switching Protocols`` turns it into a raw tunnel.

Called by ``gateway.upstream.pool``; used by the proxy's exchange through ``UpstreamStream``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

from gateway.codec import http1_wire as wire
from gateway.codec.errors import H1Error
from gateway.codec.http1_client import H1ResponseParser
from gateway.codec.messages import HOP_BY_HOP, Headers, RequestHead, ResponseHead
from gateway.codec.tunnel import TunnelSink
from gateway.upstream.errors import BadResponse, ConnectionTerminated
from gateway.upstream.stream import UpstreamHandler


class H1UpstreamConnection(asyncio.Protocol):
    protocol = "http1"

    def __init__(
        self,
        on_idle: Callable[[H1UpstreamConnection], None],
        buffer_bytes: int,
        on_lost: Callable[[], None] | None = None,
        max_requests: int = 0,
    ) -> None:
        # pool-level
        self._on_idle = on_idle
        self._on_lost = on_lost
        self._buffer_bytes = buffer_bytes
        self._max_requests = max_requests  # 0: unlimited (maxRequestsPerConnection)
        # connection-level
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = 0
        self.idle_since = time.monotonic()
        self.write_paused = False
        self._read_paused = False
        # request-level
        self.handler: UpstreamHandler | None = None
        self._parser: H1ResponseParser | None = None
        self._chunked = False
        self._request_done = True
        self._response_done = True
        self._keep_alive = True
        self._tunnel: TunnelSink | None = None

    def __repr__(self) -> str:
        state = "idle" if self.handler is None else "active"
        return f"<H1UpstreamConnection {state} reused={self.reused}>"

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t = cast(asyncio.Transport, transport)  # uvloop's transports are no subclasses
        self.transport = t
        t.set_write_buffer_limits(high=self._buffer_bytes)

    def data_received(self, data: bytes) -> None:
        tunnel = self._tunnel
        if tunnel is not None:
            tunnel.on_tunnel_data(data)
            return
        parser = self._parser
        if self.handler is None or parser is None:
            # Bytes on an idle connection: the server broke protocol; do not reuse it.
            self._close()
            return
        try:
            parser.feed(data)
        except H1Error as err:
            # The parser's callbacks may have released or re-bound the connection: read the
            # handler again rather than trusting what was true before the feed.
            failed = self._current_handler()
            self._fail()
            if failed is not None:
                failed.on_upstream_error(BadResponse(err.reason))
            return
        if parser.upgraded_offset is not None:
            self._tunnel_rest(data[parser.upgraded_offset :])
        else:
            current = self._current_handler()
            if current is not None:
                current.on_upstream_read_done()

    def _current_handler(self) -> UpstreamHandler | None:
        return self.handler

    def _tunnel_rest(self, rest: bytes) -> None:
        tunnel = self._tunnel
        if tunnel is not None and rest:
            tunnel.on_tunnel_data(rest)

    def eof_received(self) -> bool | None:
        if self._tunnel is not None:
            self._tunnel.on_tunnel_eof()
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        on_lost = self._on_lost
        if on_lost is not None:
            self._on_lost = None
            on_lost()
        handler = self.handler
        if self._tunnel is not None:
            self._tunnel.on_tunnel_eof()
            self._tunnel = None
        if handler is not None and not self._response_done:
            self.handler = None
            handler.on_upstream_error(ConnectionTerminated("upstream closed the connection"))

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._tunnel is not None:
            self._tunnel.on_tunnel_writable()
        elif self.handler is not None:
            self.handler.on_upstream_writable()

    # -- pool predicates -----------------------------------------------------------------------

    def is_available(self) -> bool:
        return not self.closed and self.handler is None and self.transport is not None

    def has_expired(self, now: float, idle_timeout_s: float) -> bool:
        return self.handler is None and now - self.idle_since > idle_timeout_s

    # -- UpstreamStream ------------------------------------------------------------------------

    def bind(self, handler: UpstreamHandler) -> H1UpstreamConnection:
        self.handler = handler
        self._response_done = False
        self._request_done = False
        self._keep_alive = True
        parser = self._parser
        if parser is None or parser.no_body:
            # After a HEAD response the parser stopped mid-message; start a fresh one.
            self._parser = H1ResponseParser(self)
        else:
            parser.reset()
        return self

    def send_request(self, head: RequestHead, end_stream: bool) -> None:
        assert self.transport is not None and self._parser is not None
        headers: Headers = [(b"host", head.authority.encode("latin-1"))]
        has_length = False
        for item in head.headers:
            k = item[0]
            if k in HOP_BY_HOP or k == b"host":
                continue
            if k == b"content-length":
                has_length = True
            headers.append(item)
        if head.method == "HEAD":
            self._parser.expect_no_body()
        self._chunked = False
        if head.upgrade is not None:
            headers.append((b"connection", b"upgrade"))
            headers.append((b"upgrade", head.upgrade))
        if end_stream:
            if not has_length and head.method in ("POST", "PUT", "PATCH"):
                headers.append((b"content-length", b"0"))
        elif head.content_length is None:
            self._chunked = True
            headers.append((b"transfer-encoding", b"chunked"))
        elif not has_length:
            headers.append((b"content-length", str(head.content_length).encode()))
        self.transport.write(wire.encode_request_head(head.method, head.path, headers))
        if end_stream:
            self._request_done = True

    def send_data(self, data: bytes) -> None:
        if self.transport is None or self.closed or not data:
            return
        self.transport.write(wire.encode_chunk(data) if self._chunked else data)

    def send_end(self, trailers: Headers | None) -> None:
        if self.transport is None or self.closed:
            return
        if self._chunked:
            self.transport.write(wire.encode_last_chunk(trailers))
        self._request_done = True
        if self._response_done:
            self._release()

    def pause_response(self) -> None:
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_response(self) -> None:
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        self.handler = None
        self._fail()

    # -- parser sink -------------------------------------------------------------------------

    def on_response(self, head: ResponseHead) -> None:
        handler = self.handler
        if handler is None:
            return
        if head.status == 101:
            self._response_done = True
        handler.on_response(head)

    def on_body(self, data: bytes) -> None:
        if self.handler is not None:
            self.handler.on_response_data(data)

    def on_response_end(self, trailers: Headers | None) -> None:
        handler = self.handler
        parser = self._parser
        self._response_done = True
        if parser is not None and not parser.keep_alive():
            self._keep_alive = False
        if handler is None:
            return
        if self._request_done:
            self._release()
        else:
            # The server answered before the request body ended; the rest of the body cannot
            # be sent on a connection that is done with this exchange.
            self.handler = None
            self._keep_alive = False
            self._close()
        handler.on_response_end(trailers)

    # -- tunnel --------------------------------------------------------------------------------

    def start_tunnel(self, sink: TunnelSink) -> H1UpstreamConnection:
        self._tunnel = sink
        self.handler = None
        return self

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def write_eof(self) -> None:
        if self.transport is not None and not self.closed and self.transport.can_write_eof():
            self.transport.write_eof()

    def pause_reading(self) -> None:
        self.pause_response()

    def resume_reading(self) -> None:
        self.resume_response()

    def close(self) -> None:
        self._close()

    # -- internals -----------------------------------------------------------------------------

    def _release(self) -> None:
        self.handler = None
        limit = self._max_requests
        if self._keep_alive and not self.closed and not (limit and self.reused + 1 >= limit):
            self.reused += 1
            self.idle_since = time.monotonic()
            if self._read_paused:
                self.resume_response()
            self._on_idle(self)
        else:
            self._close()

    def _fail(self) -> None:
        self._response_done = True
        self._close()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
