"""Downstream HTTP/1.1: one :class:`H1ServerConnection` per client connection.

Drives the sans-IO :class:`~gateway.codec.http1_server.H1RequestParser` from socket bytes and
turns each request into an :class:`H1ServerStream`. Requests are answered in order:
pipelined requests wait in ``_queue`` (reading pauses when it holds more than a few) until the
response before them is complete. Malformed input gets its status and a closed connection.

Called by ``gateway.transport.connection``, which owns the socket and picks the protocol.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from gateway.codec import http1_wire as wire
from gateway.codec.errors import H1Error
from gateway.codec.http1_server import H1RequestParser
from gateway.codec.messages import HOP_BY_HOP, Headers, RequestHead, ResponseHead
from gateway.transport.streams import (
    DownstreamInfo,
    RequestHandlerFactory,
    StreamHandler,
    TunnelSink,
    TunnelSource,
)

if TYPE_CHECKING:
    from gateway.transport.connection import DownstreamConnection

_MAX_PIPELINED = 16


class H1ServerStream:
    """One request/response exchange on an HTTP/1.1 connection."""

    __slots__ = (
        "_body_ended",
        "_buffered",
        "_chunked",
        "_conn",
        "_done",
        "_head_sent",
        "_no_body",
        "_out",
        "handler",
        "info",
        "keep_alive",
        "request",
        "upgrade_data",
    )

    def __init__(self, conn: H1ServerConnection, request: RequestHead, keep_alive: bool) -> None:
        self._conn = conn
        self.request = request
        self.info = conn.info
        self.keep_alive = keep_alive
        self.handler: StreamHandler | None = None
        # Body events that arrived before the handler existed (pipelined requests).
        self._buffered: list[bytes | tuple[Headers | None]] | None = None
        self._body_ended = request.end_stream
        self._head_sent = False
        self._chunked = False
        self._no_body = request.method == "HEAD"
        self._done = False
        self.upgrade_data = b""
        # Response bytes held back so that head, body and end leave in one write (one
        # syscall); flushed at the end of the current loop turn at the latest.
        self._out: list[bytes] | None = None

    @property
    def write_paused(self) -> bool:
        return self._conn.owner.write_paused

    # -- request body from the parser --------------------------------------------------------

    def _deliver_body(self, data: bytes) -> None:
        if self.handler is not None:
            self.handler.on_body(data)
        else:
            if self._buffered is None:
                self._buffered = []
            self._buffered.append(data)

    def _deliver_end(self, trailers: Headers | None) -> None:
        self._body_ended = True
        if self.handler is not None:
            if not self.request.end_stream:
                self.handler.on_body_end(trailers)
        else:
            if self._buffered is None:
                self._buffered = []
            self._buffered.append((trailers,))

    def _replay(self) -> None:
        buffered, self._buffered = self._buffered, None
        handler = self.handler
        if not buffered or handler is None:
            return
        for item in buffered:
            if isinstance(item, bytes):
                handler.on_body(item)
            elif not self.request.end_stream:
                handler.on_body_end(item[0])

    # -- response ----------------------------------------------------------------------------

    def send_interim(self, head: ResponseHead) -> None:
        if self._head_sent or self.request.version == "1.0":
            return
        self._conn.write(wire.encode_response_head(head.status, _forwardable(head.headers)))

    def send_head(self, head: ResponseHead) -> None:
        if self._head_sent:
            return
        self._head_sent = True
        conn = self._conn
        headers = _forwardable(head.headers)
        status = head.status
        if status == 101:
            headers.append((b"connection", b"upgrade"))
            if self.request.upgrade:
                headers.append((b"upgrade", self.request.upgrade))
            conn.write(wire.encode_response_head(status, headers))
            return
        if not self._body_ended:
            # The client is still sending: RFC 9112 §9.6 lets us answer early, but the
            # connection cannot be reused without reading the rest.
            self.keep_alive = False
        if conn.draining or self.request.upgrade is not None:
            # An Upgrade that was not accepted leaves the parser past the request: close.
            self.keep_alive = False
        bodiless = self._no_body or status in (204, 304) or head.end_stream
        if not bodiless and head.content_length is None:
            if self.request.version == "1.1":
                self._chunked = True
                headers.append((b"transfer-encoding", b"chunked"))
            else:
                self.keep_alive = False
        if (
            head.end_stream
            and head.content_length is None
            and not self._no_body
            and status
            not in (
                204,
                304,
            )
        ):
            headers.append((b"content-length", b"0"))
        if not self.keep_alive:
            headers.append((b"connection", b"close"))
        elif self.request.version == "1.0":
            headers.append((b"connection", b"keep-alive"))
        if head.end_stream:
            conn.write(wire.encode_response_head(status, headers))
            self._finish()
        else:
            self._out = [wire.encode_response_head(status, headers)]

    def send_data(self, data: bytes) -> None:
        if self._done or not data or self._no_body:
            return
        chunk = wire.encode_chunk(data) if self._chunked else data
        out = self._out
        if out is not None:
            out.append(chunk)
        else:
            self._conn.write(chunk)

    def send_end(self, trailers: Headers | None = None) -> None:
        if self._done:
            return
        if self._chunked and not self._no_body:
            last = wire.encode_last_chunk(trailers)
            if self._out is not None:
                self._out.append(last)
            else:
                self._conn.write(last)
        self.flush()
        self._finish()

    def flush(self) -> None:
        out = self._out
        if out is not None:
            self._out = None
            self._conn.write(out[0] if len(out) == 1 else b"".join(out))

    def abort(self) -> None:
        if self._done:
            return
        self._out = None
        self._done = True
        self.keep_alive = False
        self._conn.stream_done(self)

    def pause_body(self) -> None:
        self._conn.owner.pause_reading()

    def resume_body(self) -> None:
        self._conn.owner.resume_reading()

    def start_tunnel(self, sink: TunnelSink) -> TunnelSource | None:
        return self._conn.start_tunnel(self, sink)

    def _finish(self) -> None:
        self._done = True
        self._conn.stream_done(self)


def _forwardable(headers: Headers) -> Headers:
    return [(k, v) for k, v in headers if k not in HOP_BY_HOP]


class H1ServerConnection:
    """HTTP/1.1 protocol driver for one downstream connection."""

    def __init__(
        self,
        owner: DownstreamConnection,
        factory: RequestHandlerFactory,
        info: DownstreamInfo,
        *,
        max_header_bytes: int,
        scheme: str,
    ) -> None:
        self.owner = owner
        self.factory = factory
        self.info = info
        self.parser = H1RequestParser(self, max_header_bytes=max_header_bytes, scheme=scheme)
        self.current: H1ServerStream | None = None
        self._queue: deque[H1ServerStream] = deque()
        self._tunnel: TunnelSink | None = None
        self._closing = False
        self.draining = False

    # -- bytes in ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel.on_tunnel_data(data)
            return
        if self._closing:
            return
        try:
            self.parser.feed(data)
        except H1Error as err:
            self._reject(err.status, err.reason)
            return
        offset = self.parser.upgrade_offset
        if offset is not None:
            # Bytes after an Upgrade request belong to the tunnel, once the upstream agrees.
            self.parser.upgrade_offset = None
            target = self._queue[-1] if self._queue else self.current
            if target is not None:
                target.upgrade_data += data[offset:]
            self.owner.pause_reading()

    def eof_received(self) -> None:
        if self._tunnel is not None:
            self._tunnel.on_tunnel_eof()

    def connection_lost(self) -> None:
        self._closing = True
        streams = ([self.current] if self.current else []) + list(self._queue)
        self.current = None
        self._queue.clear()
        for s in streams:
            if not s._done and s.handler is not None:
                s._done = True
                s.handler.on_abort()
        if self._tunnel is not None:
            self._tunnel.on_tunnel_eof()
            self._tunnel = None

    # -- parser callbacks --------------------------------------------------------------------

    def on_request(self, head: RequestHead) -> None:
        self.owner.headers_complete()
        if head.upgrade is not None and head.upgrade.lower() == b"h2c":
            head.upgrade = None  # h2c upgrade is not offered; answer over HTTP/1.1
        stream = H1ServerStream(self, head, self.parser.keep_alive())
        if self.current is None:
            self._start(stream)
        else:
            self._queue.append(stream)
            if len(self._queue) >= _MAX_PIPELINED:
                self.owner.pause_reading()

    def on_body(self, data: bytes) -> None:
        target = self._queue[-1] if self._queue else self.current
        if target is not None:
            target._deliver_body(data)

    def on_request_end(self, trailers: Headers | None) -> None:
        target = self._queue[-1] if self._queue else self.current
        if target is not None:
            target._deliver_end(trailers)

    # -- lifecycle -----------------------------------------------------------------------------

    def _start(self, stream: H1ServerStream) -> None:
        self.current = stream
        stream.handler = self.factory.on_request(stream)
        if stream._buffered:
            stream._replay()

    def stream_done(self, stream: H1ServerStream) -> None:
        if stream is not self.current:
            return
        self.current = None
        # Break the stream <-> handler cycle so both are freed by reference counting.
        stream.handler = None
        if not stream.keep_alive or self._closing or self.draining:
            self._closing = True
            self.owner.close_after_write()
            return
        self.owner.request_finished()
        if self._queue:
            nxt = self._queue.popleft()
            self._start(nxt)
        else:
            self.owner.resume_reading()

    def writable(self) -> None:
        if self._tunnel is not None:
            self._tunnel.on_tunnel_writable()
        elif self.current is not None and self.current.handler is not None:
            self.current.handler.on_writable()

    def idle(self) -> bool:
        return self.current is None and not self._queue

    def drain(self) -> None:
        """Stop taking requests: the current response carries ``Connection: close``."""
        self.draining = True
        if self.idle():
            self._closing = True
            self.owner.close_after_write()

    def write(self, data: bytes) -> None:
        self.owner.write(data)

    def _reject(self, status: int, reason: str) -> None:
        self._closing = True
        if self.current is not None and self.current._head_sent:
            self.owner.abort()
            return
        body = (reason + "\n").encode("latin-1", "replace")
        self.owner.write(wire.simple_response(status, body, close=True))
        self.owner.count_rejection(status, reason)
        self.owner.close_after_write()

    def reject_timeout(self) -> None:
        self._reject(408, "request header timeout")

    # -- tunnels (Upgrade) ---------------------------------------------------------------------

    def start_tunnel(self, stream: H1ServerStream, sink: TunnelSink) -> TunnelSource | None:
        if stream is not self.current:
            return None
        self._tunnel = sink
        self.current = None
        stream._done = True
        pending, stream.upgrade_data = stream.upgrade_data, b""
        if pending:
            asyncio.get_running_loop().call_soon(sink.on_tunnel_data, pending)
        self.owner.resume_reading()
        self.owner.tunnel_started()
        return self.owner
