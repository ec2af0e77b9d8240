"""Upstream HTTP/2 (h2c): one multiplexed connection, many :class:`H2UpstreamStream` s.

The connection opens streams only while it is below the peer's SETTINGS_MAX_CONCURRENT_STREAMS
(``can_open_stream``); the pool opens another connection when it is full. Response DATA is
acknowledged as the exchange passes it on, so a slow downstream reader stalls the upstream
through flow control instead of buffering.

Called by ``gateway.upstream.pool``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

from gateway.codec.errors import H2ConnectionError
from gateway.codec.http2 import ErrorCodes, H2Codec
from gateway.codec.messages import HOP_BY_HOP, Headers, RequestHead, ResponseHead
from gateway.upstream.errors import BadResponse, ConnectionTerminated, StreamReset
from gateway.upstream.stream import UpstreamHandler

_TE_TRAILERS = (b"te", b"trailers")


class H2UpstreamStream:
    __slots__ = ("_blocked", "_conn", "_done", "_paused", "_unacked", "handler", "sid")

    def __init__(self, conn: H2UpstreamConnection, handler: UpstreamHandler) -> None:
        self._conn = conn
        self.handler: UpstreamHandler | None = handler
        self.sid = 0
        self._unacked = 0
        self._paused = False
        self._blocked = False
        self._done = False

    @property
    def write_paused(self) -> bool:
        return self._blocked or self._conn.write_paused

    def send_request(self, head: RequestHead, end_stream: bool) -> None:
        headers: Headers = [
            (b":method", head.method.encode("latin-1")),
            (b":scheme", b"http"),
            (b":authority", head.authority.encode("latin-1")),
            (b":path", head.path.encode("latin-1")),
        ]
        te_trailers = False
        for k, v in head.headers:
            if k in HOP_BY_HOP or k == b"host":
                if k == b"te" and v.lower() == b"trailers":
                    te_trailers = True
                continue
            headers.append((k, v))
        if te_trailers:
            headers.append(_TE_TRAILERS)
        conn = self._conn
        self.sid = conn.codec.start_request(headers, end_stream)
        conn.streams[self.sid] = self
        conn.dirty()

    def send_data(self, data: bytes) -> None:
        if self._done or not data:
            return
        conn = self._conn
        if conn.codec.send_data(self.sid, data) > conn.buffer_bytes:
            self._blocked = True
        conn.dirty()

    def send_end(self, trailers: Headers | None) -> None:
        if self._done:
            return
        conn = self._conn
        if trailers:
            conn.codec.send_trailers(self.sid, trailers)
        else:
            conn.codec.end_stream(self.sid)
        conn.dirty()

    def pause_response(self) -> None:
        self._paused = True

    def resume_response(self) -> None:
        if self._paused:
            self._paused = False
            if self._unacked:
                self._conn.codec.ack(self.sid, self._unacked)
                self._unacked = 0
                self._conn.dirty()

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self.handler = None
            self._conn.codec.reset(self.sid, ErrorCodes.CANCEL)
            self._conn.stream_done(self)
            self._conn.dirty()


class H2UpstreamConnection(asyncio.Protocol):
    protocol = "h2c"

    def __init__(
        self,
        on_change: Callable[[H2UpstreamConnection], None],
        buffer_bytes: int,
        max_requests: int = 0,
    ) -> None:
        self._on_change = on_change
        self._max_requests = max_requests  # 0: unlimited (maxRequestsPerConnection)
        self.buffer_bytes = buffer_bytes
        self.transport: asyncio.Transport | None = None
        self.codec = H2Codec(self, client=True)
        self.streams: dict[int, H2UpstreamStream] = {}
        self.closed = False
        self.write_paused = False
        self.idle_since = time.monotonic()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flush_pending = False
        self._in_receive = False
        self.reused = 0

    def __repr__(self) -> str:
        return f"<H2UpstreamConnection streams={len(self.streams)}>"

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t = cast(asyncio.Transport, transport)  # uvloop's transports are no subclasses
        self.transport = t
        t.set_write_buffer_limits(high=self.buffer_bytes)
        self.flush()

    def data_received(self, data: bytes) -> None:
        self._in_receive = True
        try:
            self.codec.receive(data)
        except H2ConnectionError as err:
            self._in_receive = False
            self.flush()
            self._fail_all(BadResponse(err.reason))
            self._close()
            return
        self._in_receive = False
        self.flush()
        for stream in list(self.streams.values()):
            if stream.handler is not None:
                stream.handler.on_upstream_read_done()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionTerminated("closed before SETTINGS"))
        self._fail_all(ConnectionTerminated("upstream closed the connection"))
        self._on_change(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        for s in list(self.streams.values()):
            if s.handler is not None and not s._blocked:
                s.handler.on_upstream_writable()

    # -- pool predicates -----------------------------------------------------------------------

    def can_open_stream(self) -> bool:
        limit = self._max_requests
        if limit and self.reused >= limit:
            return False
        return not self.closed and self.transport is not None and self.codec.can_open_stream()

    def is_spent(self) -> bool:
        """It has carried ``maxRequestsPerConnection`` streams and takes no more."""
        return bool(self._max_requests) and self.reused >= self._max_requests

    def is_idle(self) -> bool:
        return not self.streams

    def has_expired(self, now: float, idle_timeout_s: float) -> bool:
        return not self.streams and now - self.idle_since > idle_timeout_s

    def open_stream(self, handler: UpstreamHandler) -> H2UpstreamStream:
        self.reused += 1
        return H2UpstreamStream(self, handler)

    # -- H2Sink --------------------------------------------------------------------------------

    def on_headers(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.handler is None:
            return
        status = 0
        regular: Headers = []
        cl: int | None = None
        for k, v in headers:
            if k == b":status":
                status = int(v)
            elif k[:1] != b":":
                if k == b"content-length" and v.isdigit():
                    cl = int(v)
                regular.append((k, v))
        head = ResponseHead(status, regular, content_length=cl, end_stream=end_stream)
        stream.handler.on_response(head)
        if end_stream and status >= 200:
            self._end(stream, None)

    def on_data(self, stream_id: int, data: bytes, flow_len: int, end_stream: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.handler is None:
            self.codec.ack(stream_id, flow_len)
            return
        if data:
            stream.handler.on_response_data(data)
        if stream._paused:
            stream._unacked += flow_len
        else:
            self.codec.ack(stream_id, flow_len)
        if end_stream:
            self._end(stream, None)

    def on_trailers(self, stream_id: int, trailers: Headers) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            self._end(stream, trailers)

    def on_reset(self, stream_id: int, error_code: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        handler = stream.handler
        stream._done = True
        stream.handler = None
        self.stream_done(stream)
        if handler is not None:
            handler.on_upstream_error(StreamReset(f"upstream reset the stream (code {error_code})"))

    def on_writable(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and stream._blocked:
            stream._blocked = False
            if stream.handler is not None and not self.write_paused:
                stream.handler.on_upstream_writable()

    def on_remote_settings(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)

    def on_goaway(self, last_stream_id: int, error_code: int) -> None:
        for sid, stream in list(self.streams.items()):
            if sid > last_stream_id and stream.handler is not None:
                handler = stream.handler
                stream.handler = None
                stream._done = True
                self.stream_done(stream)
                handler.on_upstream_error(ConnectionTerminated("upstream went away (GOAWAY)"))
        self._on_change(self)
        if not self.streams:
            self._close()

    # -- internals -----------------------------------------------------------------------------

    def _end(self, stream: H2UpstreamStream, trailers: Headers | None) -> None:
        handler = stream.handler
        stream._done = True
        stream.handler = None
        self.stream_done(stream)
        if handler is not None:
            handler.on_response_end(trailers)

    def stream_done(self, stream: H2UpstreamStream) -> None:
        if self.streams.pop(stream.sid, None) is not None:
            if not self.streams:
                self.idle_since = time.monotonic()
                if self.codec.goaway_received or self.is_spent():
                    self._close()
            self._on_change(self)

    def dirty(self) -> None:
        if self._flush_pending or self._in_receive:
            return
        self._flush_pending = True
        asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        data = self.codec.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    def _fail_all(self, error: ConnectionTerminated | BadResponse) -> None:
        streams = list(self.streams.values())
        self.streams.clear()
        for s in streams:
            handler = s.handler
            s.handler = None
            s._done = True
            if handler is not None:
                handler.on_upstream_error(error)

    def close(self) -> None:
        self._close()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.codec.close()
                data = self.codec.data_to_send()
                if data:
                    self.transport.write(data)  # the GOAWAY, before the close
                self.transport.close()
