"""Unit tests of ``gateway.codec.http2.H2Codec`` (server side), driven by a real
``h2.connection.H2Connection`` client: bytes in, bytes out, no sockets.

Covers request validation (RFC 9113 §8.2), premature-reset accounting (rapid reset), outbound
flow control (data queued at a zero window and flushed by WINDOW_UPDATE), explicit inbound
acknowledgement, trailers both ways, and the CONTINUATION bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.frame_buffer
import h2.settings
import pytest
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, HeadersFrame

from gateway.codec.errors import H2ConnectionError, H2StreamError
from gateway.codec.http2 import ErrorCodes, H2Codec, validate_request_headers
from gateway.codec.messages import Headers

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _restore_continuation_backlog() -> Iterator[None]:
    # H2Codec configures a module constant of h2; keep the tests independent of each other.
    saved = h2.frame_buffer.CONTINUATION_BACKLOG
    yield
    h2.frame_buffer.CONTINUATION_BACKLOG = saved


class Recorder:
    """An H2Sink that writes down every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_headers(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        self.calls.append(("headers", stream_id, headers, end_stream))

    def on_data(self, stream_id: int, data: bytes, flow_len: int, end_stream: bool) -> None:
        self.calls.append(("data", stream_id, data, flow_len, end_stream))

    def on_trailers(self, stream_id: int, trailers: Headers) -> None:
        self.calls.append(("trailers", stream_id, trailers))

    def on_reset(self, stream_id: int, error_code: int) -> None:
        self.calls.append(("reset", stream_id, error_code))

    def on_writable(self, stream_id: int) -> None:
        self.calls.append(("writable", stream_id))

    def on_goaway(self, last_stream_id: int, error_code: int) -> None:
        self.calls.append(("goaway", last_stream_id, error_code))

    def on_remote_settings(self) -> None:
        self.calls.append(("settings",))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind]


class Pair:
    """An H2Codec server and an h2 client, wired back to back."""

    def __init__(self, client_settings: dict[int, int] | None = None, **codec: Any) -> None:
        self.sink = Recorder()
        self.server = H2Codec(self.sink, client=False, **codec)
        cfg = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.client = h2.connection.H2Connection(config=cfg)
        self.client.initiate_connection()
        if client_settings:
            self.client.update_settings(client_settings)
        self.events: list[h2.events.Event] = []
        self.pump()

    def to_server(self) -> bool:
        data = self.client.data_to_send()
        if data:
            self.server.receive(data)
        return bool(data)

    def to_client(self) -> bool:
        data = self.server.data_to_send()
        if data:
            self.events.extend(self.client.receive_data(data))
        return bool(data)

    def pump(self) -> None:
        while self.to_server() | self.to_client():
            pass

    def client_events(self, kind: type, sid: int | None = None) -> list[Any]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and (sid is None or getattr(e, "stream_id", None) == sid)
        ]

    def request(
        self,
        path: str = "/",
        *,
        method: str = "GET",
        end: bool = True,
        extra: Headers | None = None,
    ) -> int:
        sid: int = self.client.get_next_available_stream_id()
        headers = [(b":method", method.encode()), (b":scheme", b"http"),
                   (b":authority", b"a"), (b":path", path.encode()), *(extra or [])]  # fmt: skip
        self.client.send_headers(sid, headers, end_stream=end)
        self.pump()
        return sid


def test_server_advertises_its_limits() -> None:
    p = Pair(max_concurrent_streams=7, initial_window_bytes=12345, max_header_list_bytes=4096)
    rs = p.client.remote_settings
    assert rs.max_concurrent_streams == 7
    assert rs.initial_window_size == 12345
    assert rs.max_header_list_size == 4096
    assert rs.enable_push == 0
    assert p.sink.of("settings")


def test_valid_request_reaches_the_sink() -> None:
    p = Pair()
    sid = p.request("/ok", extra=[(b"te", b"trailers"), (b"x-a", b"b")])
    [(_, got_sid, headers, end)] = p.sink.of("headers")
    assert (got_sid, end) == (sid, True)
    assert (b":path", b"/ok") in headers and (b"te", b"trailers") in headers
    assert not p.client_events(h2.events.StreamReset)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([(b"connection", b"keep-alive")], id="connection"),
        pytest.param([(b"keep-alive", b"1")], id="keep-alive"),
        pytest.param([(b"proxy-connection", b"x")], id="proxy-connection"),
        pytest.param([(b"transfer-encoding", b"chunked")], id="transfer-encoding"),
        pytest.param([(b"upgrade", b"h2c")], id="upgrade"),
        pytest.param([(b"te", b"gzip")], id="te-gzip"),
        pytest.param([(b"X-Upper", b"v")], id="upper-case-name"),
        pytest.param([(b"x-a", b"a\r\nb")], id="crlf-in-value"),
        pytest.param([(b"x-a", b"a\x00b")], id="nul-in-value"),
        pytest.param([(b"x-a", b"v"), (b":extra", b"v")], id="unknown-pseudo"),
        pytest.param([(b"x-a", b"v"), (b":method", b"GET")], id="pseudo-after-regular"),
        pytest.param([(b":path", b"/again")], id="repeated-pseudo"),
    ],
)
def test_malformed_request_is_reset_and_not_delivered(extra: Headers) -> None:
    p = Pair()
    sid = p.request("/bad", extra=extra)
    [reset] = p.client_events(h2.events.StreamReset, sid)
    assert reset.error_code == ErrorCodes.PROTOCOL_ERROR
    assert p.sink.of("headers") == []
    # A stream error: the connection goes on.
    ok = p.request("/next")
    assert [c[1] for c in p.sink.of("headers")] == [ok]
    assert not p.server.goaway_sent


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")], True),
        ([(b":method", b"CONNECT"), (b":authority", b"a:443")], True),
        ([(b":scheme", b"http"), (b":path", b"/")], False),
        ([(b":method", b"GET"), (b":scheme", b"http")], False),
        ([(b":method", b"GET"), (b":path", b"/"), (b"te", b"Trailers")], True),
    ],
)
def test_validate_request_headers(headers: Headers, ok: bool) -> None:
    if ok:
        validate_request_headers(1, headers)
    else:
        with pytest.raises(H2StreamError) as info:
            validate_request_headers(1, headers)
        assert info.value.error_code == ErrorCodes.PROTOCOL_ERROR


# -- premature resets ------------------------------------------------------------------------------


def test_premature_resets_end_the_connection_with_enhance_your_calm() -> None:
    p = Pair(max_premature_resets=5, premature_reset_ratio=0.5)
    for i in range(4):
        sid = p.request(f"/r{i}")
        p.client.reset_stream(sid)
        p.pump()
    assert not p.server.goaway_sent
    assert len(p.sink.of("reset")) == 4
    sid = p.request("/r4")
    p.client.reset_stream(sid)
    with pytest.raises(H2ConnectionError) as info:
        p.to_server()
    assert info.value.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    p.to_client()
    [ended] = p.client_events(h2.events.ConnectionTerminated)
    assert ended.error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_resets_after_a_complete_response_are_not_premature() -> None:
    p = Pair(max_premature_resets=3, premature_reset_ratio=0.5)
    for i in range(10):
        sid = p.request(f"/done{i}", method="POST", end=False)
        p.server.send_headers(sid, [(b":status", b"200")], end_stream=True)
        p.pump()
        # The response is complete; the client abandons its upload half.
        p.client.reset_stream(sid)
        p.pump()
    assert not p.server.goaway_sent


def test_resets_under_the_ratio_are_tolerated() -> None:
    p = Pair(max_premature_resets=3, premature_reset_ratio=0.5)
    for i in range(10):
        sid = p.request(f"/ok{i}")
        p.server.send_headers(sid, [(b":status", b"204")], end_stream=True)
        p.pump()
    for i in range(5):  # 5 resets of 15 streams: under half
        sid = p.request(f"/gone{i}")
        p.client.reset_stream(sid)
        p.pump()
    assert not p.server.goaway_sent
    sid = p.request("/gone-more")
    p.client.reset_stream(sid)
    p.pump()
    assert not p.server.goaway_sent  # 6 of 16


# -- flow control ----------------------------------------------------------------------------------


def test_data_waits_for_window_and_window_update_flushes_it() -> None:
    p = Pair(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    sid = p.request("/stream")
    p.server.send_headers(sid, [(b":status", b"200")])
    body = bytes(range(256)) * 4  # 1024 bytes
    assert p.server.send_data(sid, body, end_stream=True) == len(body)
    assert p.server.pending(sid) == len(body)
    p.pump()
    assert p.client_events(h2.events.ResponseReceived, sid)
    assert not p.client_events(h2.events.DataReceived, sid)

    p.client.increment_flow_control_window(600, stream_id=sid)
    p.pump()
    got = b"".join(e.data for e in p.client_events(h2.events.DataReceived, sid))
    assert got == body[:600]
    assert p.server.pending(sid) == 424
    assert p.sink.of("writable") == []
    assert not p.client_events(h2.events.StreamEnded, sid)

    p.client.increment_flow_control_window(424, stream_id=sid)
    p.pump()
    got = b"".join(e.data for e in p.client_events(h2.events.DataReceived, sid))
    assert got == body
    assert p.server.pending(sid) == 0
    assert p.sink.of("writable") == [("writable", sid)]
    assert p.client_events(h2.events.StreamEnded, sid)
    assert p.server.open_streams == 0


def test_more_data_queues_behind_queued_data_in_order() -> None:
    p = Pair(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10})
    sid = p.request("/order")
    p.server.send_headers(sid, [(b":status", b"200")])
    assert p.server.send_data(sid, b"0123456789abcdef") == 6
    assert p.server.send_data(sid, b"ghij") == 10
    p.server.end_stream(sid)
    p.pump()
    p.client.increment_flow_control_window(100, stream_id=sid)
    p.pump()
    got = b"".join(e.data for e in p.client_events(h2.events.DataReceived, sid))
    assert got == b"0123456789abcdefghij"
    assert p.client_events(h2.events.StreamEnded, sid)


def test_settings_raising_the_window_flushes_queued_data() -> None:
    p = Pair(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    sid = p.request("/settings")
    p.server.send_headers(sid, [(b":status", b"200")])
    p.server.send_data(sid, b"x" * 100, end_stream=True)
    p.pump()
    p.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 65535})
    p.pump()
    assert b"".join(e.data for e in p.client_events(h2.events.DataReceived, sid)) == b"x" * 100
    assert p.client_events(h2.events.StreamEnded, sid)


def test_received_data_is_acknowledged_only_when_acked() -> None:
    window = 65536
    p = Pair(initial_window_bytes=window)
    sid = p.request("/upload", method="POST", end=False)
    for _ in range(4):
        p.client.send_data(sid, b"u" * 10000)
    p.pump()
    got = p.sink.of("data")
    assert [(c[1], len(c[2]), c[3], c[4]) for c in got] == [(sid, 10000, 10000, False)] * 4
    assert p.client.local_flow_control_window(sid) == window - 40000
    p.server.ack(sid, 40000)
    p.pump()
    assert p.client.local_flow_control_window(sid) == window


# -- trailers --------------------------------------------------------------------------------------


def test_trailers_both_ways() -> None:
    p = Pair()
    sid = p.request("/grpc", method="POST", end=False, extra=[(b"te", b"trailers")])
    p.client.send_data(sid, b"req")
    p.client.send_headers(sid, [(b"x-checksum", b"1")], end_stream=True)
    p.pump()
    assert p.sink.of("trailers") == [("trailers", sid, [(b"x-checksum", b"1")])]
    p.server.send_headers(sid, [(b":status", b"200")])
    p.server.send_data(sid, b"resp")
    p.server.send_trailers(sid, [(b"grpc-status", b"0")])
    p.pump()
    [tr] = p.client_events(h2.events.TrailersReceived, sid)
    assert tr.headers == [(b"grpc-status", b"0")]
    assert p.client_events(h2.events.StreamEnded, sid)


def test_trailers_wait_behind_queued_data() -> None:
    p = Pair(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 4})
    sid = p.request("/t")
    p.server.send_headers(sid, [(b":status", b"200")])
    p.server.send_data(sid, b"abcdefgh")
    p.server.send_trailers(sid, [(b"grpc-status", b"0")])
    p.pump()
    assert not p.client_events(h2.events.TrailersReceived, sid)
    p.client.increment_flow_control_window(4, stream_id=sid)
    p.pump()
    assert b"".join(e.data for e in p.client_events(h2.events.DataReceived, sid)) == b"abcdefgh"
    assert p.client_events(h2.events.TrailersReceived, sid)


# -- header block bounds ---------------------------------------------------------------------------


def _continuation_flood(sid: int, frames: int) -> bytes:
    block = Encoder().encode([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")])
    out = bytearray()
    h = HeadersFrame(sid, flags=["END_STREAM"])
    h.data = block
    out += h.serialize()
    for i in range(frames):
        c = ContinuationFrame(sid, flags=["END_HEADERS"] if i == frames - 1 else [])
        c.data = Encoder().encode([(b"x-c", b"v")])
        out += c.serialize()
    return bytes(out)


def test_continuation_frames_over_the_limit_end_the_connection() -> None:
    p = Pair(max_continuation_frames=4)
    with pytest.raises(H2ConnectionError):
        p.server.receive(_continuation_flood(1, 10))
    assert p.sink.of("headers") == []


def test_continuation_frames_under_the_limit_are_fine() -> None:
    p = Pair(max_continuation_frames=4)
    p.server.receive(_continuation_flood(1, 3))
    assert [c[1] for c in p.sink.of("headers")] == [1]


def test_continuation_limit_survives_another_codec() -> None:
    p = Pair(max_continuation_frames=4)
    H2Codec(Recorder(), client=True)  # what an upstream h2 connection does
    with pytest.raises(H2ConnectionError):
        p.server.receive(_continuation_flood(1, 10))


def test_header_list_over_the_limit_ends_the_connection() -> None:
    p = Pair(max_header_list_bytes=2048)
    sid = p.client.get_next_available_stream_id()
    p.client.send_headers(
        sid,
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"x-big", b"a" * 4000)],
        end_stream=True,
    )
    with pytest.raises(H2ConnectionError) as info:
        p.to_server()
    assert info.value.error_code in (ErrorCodes.ENHANCE_YOUR_CALM, ErrorCodes.PROTOCOL_ERROR)
    assert p.sink.of("headers") == []
