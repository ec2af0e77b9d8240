"""Sans-IO HTTP/2 for both sides of the proxy, on the h2 library.

:class:`H2Codec` owns one ``h2.connection.H2Connection`` and everything about its streams:
request validation (h2's own header validation is switched off for speed and replaced by the
checks the proxy needs, RFC 9113 §8.2), the premature-reset accounting that answers rapid
reset (CVE-2023-44487) with GOAWAY ENHANCE_YOUR_CALM as Envoy does, and outbound buffering
per stream against the peer's flow-control windows. ``receive(data)`` feeds bytes and calls
the :class:`H2Sink`; ``data_to_send()`` is the one place output leaves.

Inbound flow control is explicit: the transport calls ``ack(stream_id, n)`` once it has
passed ``n`` received bytes on, so a slow consumer stops WINDOW_UPDATEs and the peer stalls.

Called by ``gateway.transport.http2_server`` and ``gateway.upstream.http2``.
"""

from __future__ import annotations

from typing import Protocol

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.settings
import hpack.hpack
import hpack.table
import hyperframe.frame

from gateway.codec.errors import H2ConnectionError, H2StreamError
from gateway.codec.hpack_decode import TableDecoder
from gateway.codec.hpack_encode import StaticEncoder
from gateway.codec.messages import Headers

ErrorCodes = h2.errors.ErrorCodes

# RFC 9113 §8.2.2: connection-specific fields make a message malformed.
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":path", b":authority", b":protocol"})
_BAD_VALUE_BYTES = (b"\r", b"\n", b"\x00")


class H2Sink(Protocol):
    """What the codec reports. Stream ids are ints; headers include pseudo-headers."""

    def on_headers(self, stream_id: int, headers: Headers, end_stream: bool) -> None: ...

    def on_data(self, stream_id: int, data: bytes, flow_len: int, end_stream: bool) -> None: ...

    def on_trailers(self, stream_id: int, trailers: Headers) -> None: ...

    def on_reset(self, stream_id: int, error_code: int) -> None: ...

    def on_writable(self, stream_id: int) -> None: ...

    def on_goaway(self, last_stream_id: int, error_code: int) -> None: ...

    def on_remote_settings(self) -> None: ...


class _NoLog:
    """hpack calls ``log.debug`` for every header it encodes or decodes; even disabled, a
    logging call costs more than the header. The proxy never wants that trace."""

    def debug(self, *args: object, **kwargs: object) -> None:
        pass


hpack.hpack.log = _NoLog()  # type: ignore[assignment]
hpack.table.log = _NoLog()  # type: ignore[assignment]


class _Connection(h2.connection.H2Connection):
    """h2 remembers how each closed stream ended, to answer late frames on it properly; by
    default the last 65536 per connection, which on a long-lived connection is megabytes
    that only grow. The most recent few thousand cover every late frame a peer sends."""

    MAX_CLOSED_STREAMS = 4096


class _Outbound:
    """Data waiting for flow-control window on one stream."""

    __slots__ = ("chunks", "end", "size", "trailers")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.end = False
        self.trailers: Headers | None = None


class H2Codec:
    """One HTTP/2 connection, either side. All state of the connection lives here."""

    def __init__(
        self,
        sink: H2Sink,
        *,
        client: bool,
        max_concurrent_streams: int = 100,
        initial_window_bytes: int = 256 * 1024,
        connection_window_bytes: int = 4 * 1024 * 1024,
        max_frame_bytes: int = 16 * 1024,
        max_header_list_bytes: int = 64 * 1024,
        max_premature_resets: int = 100,
        premature_reset_ratio: float = 0.5,
        max_continuation_frames: int | None = None,
    ) -> None:
        if max_continuation_frames is not None:
            # h2 bounds CONTINUATION frames per header block with a module constant. A process
            # runs one limit, set by its downstream (server) codecs; upstream codecs leave it.
            h2.frame_buffer.CONTINUATION_BACKLOG = max_continuation_frames
        config = h2.config.H2Configuration(
            client_side=client,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            split_outbound_cookies=False,
        )
        self.conn = _Connection(config=config)
        self.conn.local_settings = h2.settings.Settings(
            client=client,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: initial_window_bytes,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: max_frame_bytes,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: max_header_list_bytes,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        self.conn.decoder.max_header_list_size = max_header_list_bytes
        # Outbound header blocks use the static table only (see hpack_encode for why), and
        # inbound ones go through a leaner decoder with the same limits (hpack_decode).
        self.conn.encoder.encode = StaticEncoder(self.conn.encoder)  # type: ignore[method-assign,assignment]
        self.conn.decoder.decode = TableDecoder(self.conn.decoder)  # type: ignore[method-assign,assignment]
        self.client = client
        self._sink = sink
        self._outbound: dict[int, _Outbound] = {}
        # Streams whose response (server) or request (client) has not finished yet.
        self._open: set[int] = set()
        self._streams_opened = 0
        self._premature_resets = 0
        self._max_premature_resets = max_premature_resets
        self._premature_reset_ratio = premature_reset_ratio
        self.goaway_sent = False
        self.goaway_received = False
        # Set by a graceful GOAWAY: streams above it are refused, those below finish.
        self._goaway_last_stream: int | None = None
        self._extra_out: list[bytes] = []
        self.conn.initiate_connection()
        extra = connection_window_bytes - 65535
        if extra > 0:
            self.conn.increment_flow_control_window(extra)

    # -- input ---------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Feed bytes from the peer. Raises :class:`H2ConnectionError` when the connection must
        end; the GOAWAY is already queued in ``data_to_send()`` then."""
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            code = int(getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR))
            self.goaway_sent = True
            raise H2ConnectionError(code, str(exc) or type(exc).__name__) from None
        sink = self._sink
        for ev in events:
            if isinstance(ev, h2.events.DataReceived):
                sink.on_data(
                    ev.stream_id, ev.data, ev.flow_controlled_length, ev.stream_ended is not None
                )
            elif isinstance(ev, h2.events.RequestReceived):
                sid = ev.stream_id
                last = self._goaway_last_stream
                if last is not None and sid > last:
                    self.reset(sid, ErrorCodes.REFUSED_STREAM)
                    continue
                self._streams_opened += 1
                self._open.add(sid)
                try:
                    validate_request_headers(sid, ev.headers)
                except H2StreamError as err:
                    self.reset(sid, err.error_code)
                    self._count_premature_reset()
                    continue
                sink.on_headers(sid, ev.headers, ev.stream_ended is not None)
            elif isinstance(ev, h2.events.ResponseReceived):
                sink.on_headers(ev.stream_id, ev.headers, ev.stream_ended is not None)
            elif isinstance(ev, h2.events.TrailersReceived):
                sink.on_trailers(ev.stream_id, ev.headers)
            elif isinstance(ev, h2.events.StreamReset):
                sid = ev.stream_id
                # Reset by the client, or by h2 for the client's protocol error (a window
                # overflow, say: "MadeYouReset", CVE-2025-8671): both cost us a stream.
                if sid in self._open and not self.client:
                    self._count_premature_reset()
                self._forget(sid)
                sink.on_reset(sid, int(ev.error_code) if ev.error_code is not None else 0)
            elif isinstance(ev, h2.events.WindowUpdated):
                self._on_window(ev.stream_id)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway_received = True
                if not ev.error_code:
                    # h2 ends its state machine on any GOAWAY, but a graceful one lets the
                    # streams up to last_stream_id finish (RFC 9113 6.8): keep answering them.
                    self.conn.state_machine.state = (
                        h2.connection.ConnectionState.CLIENT_OPEN
                        if self.client
                        else h2.connection.ConnectionState.SERVER_OPEN
                    )
                sink.on_goaway(ev.last_stream_id or 0, int(ev.error_code or 0))
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in ev.changed_settings:
                    self._on_window(0)
                sink.on_remote_settings()
            # StreamEnded is reported through the stream_ended flag of the event before it;
            # pings, settings acks and priority frames need no action.

    def _count_premature_reset(self) -> None:
        self._premature_resets += 1
        resets = self._premature_resets
        if resets >= self._max_premature_resets and (
            resets >= self._premature_reset_ratio * self._streams_opened
        ):
            self.close(ErrorCodes.ENHANCE_YOUR_CALM)
            raise H2ConnectionError(
                ErrorCodes.ENHANCE_YOUR_CALM,
                f"{resets} premature stream resets of {self._streams_opened} streams",
            )

    def ack(self, stream_id: int, flow_len: int) -> None:
        """Give ``flow_len`` bytes of window back: the data has been passed on."""
        if flow_len:
            try:
                self.conn.acknowledge_received_data(flow_len, stream_id)
            except (h2.exceptions.StreamClosedError, KeyError):
                pass

    # -- output --------------------------------------------------------------------------------

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool = False) -> None:
        self.conn.send_headers(stream_id, headers, end_stream=end_stream)
        if end_stream:
            self._finish(stream_id)

    def start_request(self, headers: Headers, end_stream: bool) -> int:
        """Client side: open a stream. Raises H2ConnectionError when no stream id is left."""
        sid: int = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, headers, end_stream=end_stream)
        self._streams_opened += 1
        if not end_stream:
            self._open.add(sid)
        return sid

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> int:
        """Send what the windows allow and queue the rest. Returns the bytes still queued on the
        stream, so the caller can stop its source above a watermark."""
        out = self._outbound.get(stream_id)
        if out is not None and out.size:
            if data:
                out.chunks.append(data)
                out.size += len(data)
            out.end = out.end or end_stream
            return out.size
        sent = self._send_now(stream_id, data, end_stream)
        if sent == len(data):
            if end_stream:
                self._finish(stream_id)
            return 0
        out = self._outbound.setdefault(stream_id, _Outbound())
        out.chunks.append(data[sent:])
        out.size += len(data) - sent
        out.end = end_stream
        return out.size

    def send_trailers(self, stream_id: int, trailers: Headers) -> None:
        out = self._outbound.get(stream_id)
        if out is not None and out.size:
            out.trailers = trailers
            out.end = True
            return
        self.conn.send_headers(stream_id, trailers, end_stream=True)
        self._finish(stream_id)

    def end_stream(self, stream_id: int) -> None:
        self.send_data(stream_id, b"", end_stream=True)

    def pending(self, stream_id: int) -> int:
        out = self._outbound.get(stream_id)
        return out.size if out is not None else 0

    def reset(self, stream_id: int, error_code: int = ErrorCodes.CANCEL) -> None:
        self._forget(stream_id)
        try:
            self.conn.reset_stream(stream_id, error_code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
            pass

    def close(
        self, error_code: int = ErrorCodes.NO_ERROR, last_stream_id: int | None = None
    ) -> None:
        """Send GOAWAY. With NO_ERROR the streams already open may finish."""
        if self.goaway_sent and error_code == ErrorCodes.NO_ERROR:
            return
        self.goaway_sent = True
        try:
            self.conn.close_connection(error_code, last_stream_id=last_stream_id)
        except h2.exceptions.ProtocolError:
            pass

    def goaway_graceful(self, last_stream_id: int) -> None:
        """GOAWAY NO_ERROR that lets streams up to ``last_stream_id`` finish.

        h2's ``close_connection`` also ends its state machine, after which the responses of
        those streams could not be sent; so the frame is written here and h2 carries on.
        """
        if self.goaway_sent:
            return
        self.goaway_sent = True
        self._goaway_last_stream = last_stream_id
        frame = hyperframe.frame.GoAwayFrame(0)
        frame.last_stream_id = last_stream_id
        frame.error_code = 0
        self._extra_out.append(frame.serialize())

    def data_to_send(self) -> bytes:
        data: bytes = self.conn.data_to_send()
        if self._extra_out:
            data += b"".join(self._extra_out)
            self._extra_out.clear()
        return data

    # -- state ---------------------------------------------------------------------------------

    @property
    def open_streams(self) -> int:
        return len(self._open)

    def can_open_stream(self) -> bool:
        """Client side: below the peer's MAX_CONCURRENT_STREAMS and not going away."""
        if self.goaway_received or self.goaway_sent:
            return False
        limit: int = self.conn.remote_settings.max_concurrent_streams
        return self.conn.open_outbound_streams < limit  # half-closed (local) streams count too

    # -- internals -----------------------------------------------------------------------------

    def _send_now(self, stream_id: int, data: bytes, end_stream: bool) -> int:
        conn = self.conn
        if not data:
            if end_stream:
                conn.end_stream(stream_id)
            return 0
        window = min(conn.local_flow_control_window(stream_id), len(data))
        if window <= 0:
            return 0
        frame = conn.max_outbound_frame_size
        sent = 0
        while sent < window:
            n = min(frame, window - sent)
            last = end_stream and sent + n == len(data)
            conn.send_data(
                stream_id, data[sent : sent + n] if n != len(data) else data, end_stream=last
            )
            sent += n
        return sent

    def _on_window(self, stream_id: int) -> None:
        if not self._outbound:
            return
        targets = list(self._outbound) if stream_id == 0 else [stream_id]
        for sid in targets:
            out = self._outbound.get(sid)
            if out is None:
                continue
            try:
                self._flush_stream(sid, out)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                self._outbound.pop(sid, None)
                continue
            if not out.size:
                self._outbound.pop(sid, None)
                self._sink.on_writable(sid)

    def _flush_stream(self, sid: int, out: _Outbound) -> None:
        while out.chunks:
            chunk = out.chunks[0]
            last = len(out.chunks) == 1 and out.end and out.trailers is None
            sent = self._send_now(sid, chunk, last)
            out.size -= sent
            if sent < len(chunk):
                out.chunks[0] = chunk[sent:]
                return
            out.chunks.pop(0)
        if out.trailers is not None:
            self.conn.send_headers(sid, out.trailers, end_stream=True)
            self._finish(sid)
        elif out.end:
            self._finish(sid)

    def _finish(self, stream_id: int) -> None:
        self._open.discard(stream_id)

    def _forget(self, stream_id: int) -> None:
        self._open.discard(stream_id)
        self._outbound.pop(stream_id, None)


def validate_request_headers(stream_id: int, headers: Headers) -> None:
    """RFC 9113 §8.2-8.3 checks on a request's header block; raises H2StreamError."""
    seen_regular = False
    pseudo: set[bytes] = set()
    for name, value in headers:
        if name[:1] == b":":
            if seen_regular or name not in _REQUEST_PSEUDO or name in pseudo:
                raise H2StreamError(stream_id, ErrorCodes.PROTOCOL_ERROR, "bad pseudo-header")
            pseudo.add(name)
            continue
        seen_regular = True
        if name in _CONNECTION_SPECIFIC:
            raise H2StreamError(
                stream_id, ErrorCodes.PROTOCOL_ERROR, f"connection-specific header {name!r}"
            )
        if name == b"te" and value.lower() != b"trailers":
            raise H2StreamError(stream_id, ErrorCodes.PROTOCOL_ERROR, "te other than trailers")
        if name.lower() != name:
            raise H2StreamError(stream_id, ErrorCodes.PROTOCOL_ERROR, "upper-case header name")
        for bad in _BAD_VALUE_BYTES:
            if bad in value or bad in name:
                raise H2StreamError(stream_id, ErrorCodes.PROTOCOL_ERROR, "bad header value")
    if b":method" not in pseudo:
        raise H2StreamError(stream_id, ErrorCodes.PROTOCOL_ERROR, "missing :method")
    # CONNECT (without :protocol) carries only :method and :authority.
    if b":path" not in pseudo and b":protocol" not in pseudo:
        for name, value in headers:
            if name == b":method" and value == b"CONNECT":
                return
        raise H2StreamError(stream_id, ErrorCodes.PROTOCOL_ERROR, "missing :path")
