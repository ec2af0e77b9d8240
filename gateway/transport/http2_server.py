"""Downstream HTTP/2: one :class:`H2ServerConnection` per client connection.

Drives the sans-IO :class:`~gateway.codec.http2.H2Codec` and turns each request stream into
an :class:`H2ServerStream`. Received DATA is acknowledged (window given back) only while the
stream's consumer keeps up, so a slow upstream stalls the client instead of filling memory.
Output is batched: streams mark the connection dirty and one flush per loop turn writes all
frames.

Called by ``gateway.transport.connection``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from gateway.codec.errors import H2ConnectionError
from gateway.codec.http2 import ErrorCodes, H2Codec
from gateway.codec.messages import HOP_BY_HOP, Headers, RequestHead, ResponseHead
from gateway.config.snapshot import Limits
from gateway.transport.streams import (
    DownstreamInfo,
    RequestHandlerFactory,
    StreamHandler,
    TunnelSink,
    TunnelSource,
)

if TYPE_CHECKING:
    from gateway.transport.connection import DownstreamConnection

_STATUS = {s: str(s).encode() for s in range(100, 600)}


class H2ServerStream:
    __slots__ = (
        "_blocked",
        "_conn",
        "_done",
        "_head_sent",
        "_paused",
        "_pending",
        "_unacked",
        "handler",
        "info",
        "request",
        "sid",
    )

    def __init__(self, conn: H2ServerConnection, sid: int, request: RequestHead) -> None:
        self._conn = conn
        self.sid = sid
        self.request = request
        self.info = conn.info
        self.handler: StreamHandler | None = None
        self._unacked = 0
        self._paused = False
        self._blocked = False
        self._done = False
        self._head_sent = False
        # Body held until the end of the loop turn, so that a body that arrives with its end
        # leaves as one DATA frame carrying END_STREAM instead of two frames.
        self._pending: list[bytes] | None = None

    @property
    def write_paused(self) -> bool:
        return self._blocked or self._conn.owner.write_paused

    def current_handler(self) -> StreamHandler | None:
        return self.handler

    def flush(self) -> None:
        pass  # the connection batches and flushes once per loop turn

    def send_interim(self, head: ResponseHead) -> None:
        if self._done or self._head_sent:
            return
        headers = [(b":status", _STATUS.get(head.status) or str(head.status).encode())]
        headers.extend(_forwardable(head.headers))
        self._conn.codec.send_headers(self.sid, headers, end_stream=False)
        self._conn.dirty()

    def send_head(self, head: ResponseHead) -> None:
        if self._done or self._head_sent:
            return
        self._head_sent = True
        headers = [(b":status", _STATUS.get(head.status) or str(head.status).encode())]
        headers.extend(_forwardable(head.headers))
        end = head.end_stream or self.request.method == "HEAD"
        self._conn.codec.send_headers(self.sid, headers, end_stream=end)
        self._conn.dirty()
        if end:
            self._finish()

    def send_data(self, data: bytes) -> None:
        if self._done or not data:
            return
        if self._pending is None:
            self._pending = [data]
            self._conn.cork(self)
        else:
            self._pending.append(data)

    def send_pending(self, end_stream: bool = False) -> None:
        pending = self._pending
        if pending is None:
            if end_stream:
                self._conn.codec.end_stream(self.sid)
            return
        self._pending = None
        conn = self._conn
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        queued = conn.codec.send_data(self.sid, data, end_stream)
        if queued > conn.limits.stream_buffer_bytes:
            self._blocked = True

    def send_end(self, trailers: Headers | None = None) -> None:
        if self._done:
            return
        codec = self._conn.codec
        if trailers:
            self.send_pending()
            codec.send_trailers(self.sid, [(k, v) for k, v in trailers if k not in HOP_BY_HOP])
        else:
            self.send_pending(end_stream=True)
        self._conn.dirty()
        self._finish()

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._pending = None
        self._conn.codec.reset(self.sid, ErrorCodes.INTERNAL_ERROR)
        self._conn.dirty()
        self._conn.stream_finished(self)

    def pause_body(self) -> None:
        self._paused = True

    def resume_body(self) -> None:
        if self._paused:
            self._paused = False
            if self._unacked:
                self._conn.codec.ack(self.sid, self._unacked)
                self._unacked = 0
                self._conn.dirty()

    def start_tunnel(self, sink: TunnelSink) -> TunnelSource | None:
        return None  # Extended CONNECT is not offered, so there is nothing to tunnel.

    def _finish(self) -> None:
        self._done = True
        self._conn.stream_finished(self)


def _forwardable(headers: Headers) -> Headers:
    return [(k, v) for k, v in headers if k not in HOP_BY_HOP]


def request_from_headers(headers: Headers, scheme: str) -> RequestHead:
    method = path = authority = ""
    regular: Headers = []
    host = None
    content_length: int | None = None
    cookies: list[bytes] | None = None
    for k, v in headers:
        if k[:1] == b":":
            if k == b":method":
                method = v.decode("latin-1")
            elif k == b":path":
                path = v.decode("latin-1")
            elif k == b":authority":
                authority = v.decode("latin-1")
            elif k == b":scheme":
                scheme = v.decode("latin-1")
            continue
        if k == b"host":
            host = v
            continue
        if k == b"content-length" and v.isdigit():
            content_length = int(v)
        elif k == b"cookie":
            # HTTP/2 may split cookies over several fields; HTTP/1.1 wants one (RFC 9113 8.2.3).
            if cookies is None:
                cookies = []
            cookies.append(v)
            continue
        regular.append((k, v))
    if cookies:
        regular.append((b"cookie", b"; ".join(cookies)))
    if not authority and host is not None:
        authority = host.decode("latin-1")
    return RequestHead(
        method,
        path,
        authority,
        regular,
        scheme=scheme,
        version="2",
        content_length=content_length,
    )


class H2ServerConnection:
    """HTTP/2 protocol driver for one downstream connection."""

    def __init__(
        self,
        owner: DownstreamConnection,
        factory: RequestHandlerFactory,
        info: DownstreamInfo,
        limits: Limits,
        *,
        scheme: str,
    ) -> None:
        self.owner = owner
        self.factory = factory
        self.info = info
        self.limits = limits
        self.scheme = scheme
        self.codec = H2Codec(
            self,
            client=False,
            max_concurrent_streams=limits.h2_max_concurrent_streams,
            initial_window_bytes=limits.h2_initial_window_bytes,
            max_frame_bytes=limits.h2_max_frame_bytes,
            max_header_list_bytes=limits.h2_max_header_list_bytes,
            max_premature_resets=limits.h2_max_premature_resets,
            premature_reset_ratio=limits.h2_premature_reset_ratio,
            max_continuation_frames=limits.h2_max_continuation_frames,
        )
        self.streams: dict[int, H2ServerStream] = {}
        self._corked: list[H2ServerStream] = []
        self._flush_pending = False
        self._in_receive = False
        self._closed = False
        self.draining = False
        self._last_active = time.monotonic()
        self._partial_since: float | None = None

    def start(self) -> None:
        self.flush()

    # -- bytes in ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._in_receive = True
        try:
            self.codec.receive(data)
        except H2ConnectionError as err:
            self.owner.count_rejection(err.error_code, err.reason)
            self._in_receive = False
            self.flush()
            self._close()
            return
        self._in_receive = False
        self.flush()

    def eof_received(self) -> None:
        pass

    def connection_lost(self) -> None:
        self._closed = True
        streams = list(self.streams.values())
        self.streams.clear()
        for s in streams:
            if not s._done:
                s._done = True
                if s.handler is not None:
                    s.handler.on_abort()

    # -- H2Sink ------------------------------------------------------------------------------

    def on_headers(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        request = request_from_headers(headers, self.scheme)
        request.end_stream = end_stream
        if end_stream:
            if request.content_length:
                self.codec.reset(stream_id, ErrorCodes.PROTOCOL_ERROR)
                return
            request.content_length = 0
        stream = H2ServerStream(self, stream_id, request)
        self.streams[stream_id] = stream
        self._last_active = time.monotonic()
        stream.handler = self.factory.on_request(stream)

    def on_data(self, stream_id: int, data: bytes, flow_len: int, end_stream: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.handler is None:
            self.codec.ack(stream_id, flow_len)
            return
        if data:
            stream.handler.on_body(data)
        if stream._paused:
            stream._unacked += flow_len
        else:
            self.codec.ack(stream_id, flow_len)
        if end_stream:
            # on_body may have finished the stream: look at its handler afresh.
            handler = stream.current_handler()
            if handler is not None:
                handler.on_body_end(None)

    def on_trailers(self, stream_id: int, trailers: Headers) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and stream.handler is not None:
            stream.handler.on_body_end(trailers)

    def on_reset(self, stream_id: int, error_code: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is not None and not stream._done:
            stream._done = True
            if stream.handler is not None:
                stream.handler.on_abort()
        self._maybe_close()

    def on_writable(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and stream._blocked:
            stream._blocked = False
            if stream.handler is not None and not self.owner.write_paused:
                stream.handler.on_writable()

    def on_remote_settings(self) -> None:
        pass

    def on_goaway(self, last_stream_id: int, error_code: int) -> None:
        self.draining = True
        self._maybe_close()

    # -- output and lifecycle -----------------------------------------------------------------

    def dirty(self) -> None:
        if self._flush_pending or self._in_receive:
            return
        self._flush_pending = True
        asyncio.get_running_loop().call_soon(self.flush)

    def cork(self, stream: H2ServerStream) -> None:
        self._corked.append(stream)
        self.dirty()

    def flush(self) -> None:
        self._flush_pending = False
        if self._corked:
            corked, self._corked = self._corked, []
            for stream in corked:
                if not stream._done:
                    stream.send_pending()
        data = self.codec.data_to_send()
        if data:
            self.owner.write(data)

    def writable(self) -> None:
        for stream in list(self.streams.values()):
            if not stream._blocked and stream.handler is not None and not stream._done:
                stream.handler.on_writable()

    def stream_finished(self, stream: H2ServerStream) -> None:
        self.streams.pop(stream.sid, None)
        stream.handler = None  # break the stream <-> handler cycle
        self._last_active = time.monotonic()
        self._maybe_close()

    def _maybe_close(self) -> None:
        if self.draining and not self.streams:
            self.flush()
            self._close()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self.owner.close_after_write()

    def drain(self) -> None:
        """GOAWAY with the last stream id: open streams finish, new ones are refused."""
        self.draining = True
        self.codec.goaway_graceful(self.codec.conn.highest_inbound_stream_id)
        self.flush()
        self._maybe_close()

    def check_timeouts(self, now: float) -> None:
        # A header block left open blocks every other frame of the connection (slowloris),
        # whether or not other streams are open.
        partial = bool(getattr(self.codec.conn.incoming_buffer, "_headers_buffer", None))
        if partial:
            if self._partial_since is None:
                self._partial_since = now
            elif now - self._partial_since > self.limits.header_timeout_s:
                self.owner.count_rejection(408, "HTTP/2 header block timeout")
                self._goaway_and_close()
                return
        else:
            self._partial_since = None
        if self.streams:
            return
        idle = now - self._last_active
        if idle > self.limits.idle_timeout_s or (partial and idle > self.limits.header_timeout_s):
            self._goaway_and_close()

    def _goaway_and_close(self) -> None:
        self.codec.close(ErrorCodes.NO_ERROR)
        self.flush()
        self._close()
