"""HTTP/2 limits (DESIGN.md §4, "HTTP/2" and "Headers").

A real h2 client (``h2.connection.H2Connection`` with its own checks off) or hand-built frames
(``hyperframe``) over a raw socket to a real gateway, speaking h2c with prior knowledge.
Each test sends one kind of malformed or abusive input and checks the exact answer: a
RST_STREAM or GOAWAY with the expected error code, the backend not receiving the request,
and a fresh connection still being served.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import h2.events
import pytest
from hpack import Encoder
from hpack.hpack import encode_integer
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from limits_support import (
    PREFACE,
    Backend,
    FrameReader,
    Gateway,
    H2Session,
    assert_fresh_connection_works,
    connect,
    h2_request_headers,
    run_gateway,
    wait_until,
)

pytestmark = pytest.mark.timeout(30)

NO_ERROR, PROTOCOL_ERROR, REFUSED_STREAM, ENHANCE_YOUR_CALM = 0x0, 0x1, 0x7, 0xB
MAX_STREAMS = 10
INITIAL_WINDOW = 98304
MAX_RESETS = 50
SETTINGS = (
    f"  h2MaxConcurrentStreams: {MAX_STREAMS}\n"
    f"  h2InitialWindowBytes: {INITIAL_WINDOW}\n"
    f"  h2MaxPrematureResets: {MAX_RESETS}\n"
)


@pytest.fixture(scope="module")
def gw(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with run_gateway(tmp_path_factory.mktemp("h2"), backend, SETTINGS) as g:
        yield g


def _raw(gw: Gateway) -> tuple[socket.socket, FrameReader, SettingsFrame]:
    """A raw h2c connection: preface and SETTINGS sent, the server's SETTINGS read and ACKed."""
    sock = connect(gw.port)
    sock.sendall(PREFACE + SettingsFrame(0).serialize())
    reader = FrameReader(sock)
    settings, _ = reader.until(lambda f: isinstance(f, SettingsFrame) and "ACK" not in f.flags)
    assert isinstance(settings, SettingsFrame)
    sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
    return sock, reader, settings


def _is_goaway(f: Frame) -> bool:
    return isinstance(f, GoAwayFrame)


def _is_rst_or_goaway(sid: int) -> object:
    return lambda f: (
        isinstance(f, GoAwayFrame) or (isinstance(f, RstStreamFrame) and f.stream_id == sid)
    )


def _headers_frame(sid: int, block: bytes, flags: list[str]) -> bytes:
    f = HeadersFrame(sid, flags=flags)
    f.data = block
    return f.serialize()


def _ev_on(sid: int, *types: type) -> object:
    return lambda e: isinstance(e, types) and getattr(e, "stream_id", None) == sid


# -- SETTINGS and windows ------------------------------------------------------------------------


def test_settings_advertise_the_configured_limits(gw: Gateway) -> None:
    sock, reader, settings = _raw(gw)
    s = settings.settings
    assert s[SettingsFrame.MAX_CONCURRENT_STREAMS] == MAX_STREAMS
    assert s[SettingsFrame.INITIAL_WINDOW_SIZE] == INITIAL_WINDOW
    assert s[SettingsFrame.MAX_HEADER_LIST_SIZE] == 64 * 1024
    assert s[SettingsFrame.MAX_FRAME_SIZE] == 16 * 1024
    assert s.get(SettingsFrame.ENABLE_PUSH, 0) == 0
    # The connection window is raised once, to a bounded size (DESIGN: windows are bounded).
    update, _ = reader.until(lambda f: isinstance(f, WindowUpdateFrame) and f.stream_id == 0)
    assert isinstance(update, WindowUpdateFrame)
    assert 65535 + update.window_increment <= 16 * 1024 * 1024
    sock.close()


def test_stream_window_is_what_was_advertised(gw: Gateway) -> None:
    """A POST that fills the advertised stream window exactly is accepted and echoed."""
    s = H2Session(gw.port)
    s.until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
    sid = s.conn.get_next_available_stream_id()
    s.conn.send_headers(sid, h2_request_headers("/echo/window", "POST"))
    assert s.conn.local_flow_control_window(sid) == INITIAL_WINDOW
    body = b"w" * INITIAL_WINDOW
    for i in range(0, len(body), 16384):
        s.conn.send_data(sid, body[i : i + 16384])
    s.conn.end_stream(sid)
    s.flush()
    status, echoed = s.response(sid)
    assert status == 200
    assert echoed == body
    s.close()


# -- malformed requests (RFC 9113 §8.2) ----------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        pytest.param((b"connection", b"keep-alive"), id="connection"),
        pytest.param((b"transfer-encoding", b"chunked"), id="transfer-encoding"),
        pytest.param((b"upgrade", b"x"), id="upgrade"),
        pytest.param((b"keep-alive", b"timeout=5"), id="keep-alive"),
        pytest.param((b"proxy-connection", b"keep-alive"), id="proxy-connection"),
        pytest.param((b"te", b"gzip"), id="te-gzip"),
    ],
)
def test_connection_specific_header_resets_the_stream(
    gw: Gateway, header: tuple[bytes, bytes]
) -> None:
    path = f"/h2-bad-header/{header[0].decode()}"
    s = H2Session(gw.port)
    sid = s.conn.get_next_available_stream_id()
    s.conn.send_headers(sid, h2_request_headers(path, extra=[header]), end_stream=True)
    s.flush()
    ev = s.until(_ev_on(sid, h2.events.StreamReset, h2.events.ResponseReceived))
    assert isinstance(ev, h2.events.StreamReset), f"the request was answered: {ev}"
    assert ev.error_code == PROTOCOL_ERROR
    # A stream error leaves the connection usable.
    assert s.get("/h2-after-bad-header") == (200, b"ok /h2-after-bad-header")
    s.close()
    assert gw.backend.heads[path] == 0
    assert_fresh_connection_works(gw, "h2-bad-header")


def test_te_trailers_is_allowed(gw: Gateway) -> None:
    s = H2Session(gw.port)
    assert s.get("/h2-te-trailers", [(b"te", b"trailers")]) == (200, b"ok /h2-te-trailers")
    s.close()


@pytest.mark.parametrize(
    ("declared", "sent", "data_frames"),
    [
        pytest.param(10, b"hello", True, id="less-data-than-declared"),
        pytest.param(5, b"hello, world", True, id="more-data-than-declared"),
        pytest.param(5, b"", False, id="declared-but-end-on-headers"),
    ],
)
def test_content_length_disagreeing_with_data_is_refused(
    gw: Gateway, request: pytest.FixtureRequest, declared: int, sent: bytes, data_frames: bool
) -> None:
    path = f"/echo/h2-cl/{request.node.callspec.id}"
    sock, reader, _ = _raw(gw)
    block = Encoder().encode(
        [*h2_request_headers(path, "POST"), (b"content-length", str(declared).encode())]
    )
    if data_frames:
        data = DataFrame(1, flags=["END_STREAM"])
        data.data = sent
        sock.sendall(_headers_frame(1, block, ["END_HEADERS"]) + data.serialize())
    else:
        sock.sendall(_headers_frame(1, block, ["END_HEADERS", "END_STREAM"]))
    frame, _ = reader.until(
        lambda f: _is_rst_or_goaway(1)(f) or (isinstance(f, HeadersFrame) and f.stream_id == 1)
    )
    assert not isinstance(frame, HeadersFrame), "the malformed request was answered"
    if isinstance(frame, GoAwayFrame):
        assert frame.error_code == PROTOCOL_ERROR
    else:
        assert frame.error_code == PROTOCOL_ERROR
    sock.close()
    assert_fresh_connection_works(gw, "h2-content-length")
    assert gw.backend.complete[path] == 0, "the backend received a complete request"


def test_data_beyond_content_length_is_never_forwarded(gw: Gateway) -> None:
    """H2-to-H1 downgrade smuggling: the declared body arrives first and is forwarded; the
    extra DATA (an HTTP/1.1 request) must be refused, never written to the upstream
    connection."""
    path, smuggled = "/echo/h2-downgrade", "/smuggled/h2-downgrade"
    sock, reader, _ = _raw(gw)
    block = Encoder().encode([*h2_request_headers(path, "POST"), (b"content-length", b"5")])
    first = DataFrame(1)
    first.data = b"hello"
    sock.sendall(_headers_frame(1, block, ["END_HEADERS"]) + first.serialize())
    wait_until(lambda: gw.backend.complete[path] == 1, 5, "the declared body forwarded")
    extra = DataFrame(1, flags=["END_STREAM"])
    extra.data = f"GET {smuggled} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    sock.sendall(extra.serialize())
    frame, _ = reader.until(_is_rst_or_goaway(1))
    assert frame.error_code == PROTOCOL_ERROR
    sock.close()
    for i in range(3):  # reuse pooled upstream connections, where smuggled bytes would sit
        assert_fresh_connection_works(gw, f"h2-downgrade-{i}")
    assert gw.backend.heads[smuggled] == 0


# -- rapid reset (CVE-2023-44487) ----------------------------------------------------------------


def _open_and_reset(n: int, first_sid: int = 1) -> bytes:
    enc = Encoder()
    out = bytearray()
    for i in range(n):
        sid = first_sid + 2 * i
        block = enc.encode(h2_request_headers(f"/rapid/{i}"))
        out += _headers_frame(sid, block, ["END_HEADERS", "END_STREAM"])
        rst = RstStreamFrame(sid)
        rst.error_code = 0x8  # CANCEL
        out += rst.serialize()
    return bytes(out)


def test_rapid_reset_gets_goaway_enhance_your_calm(gw: Gateway) -> None:
    before = sum(n for r, n in gw.rejections().items() if r.startswith(f"{ENHANCE_YOUR_CALM} "))
    sock, reader, _ = _raw(gw)
    try:
        sock.sendall(_open_and_reset(300))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the proxy may hang up before it has read everything
    goaway, _ = reader.until(_is_goaway, timeout=10)
    assert isinstance(goaway, GoAwayFrame)
    assert goaway.error_code == ENHANCE_YOUR_CALM
    assert reader.closed(), "the connection must close after GOAWAY"
    sock.close()
    assert_fresh_connection_works(gw, "rapid-reset")
    wait_until(
        lambda: sum(n for r, n in gw.rejections().items() if r.startswith("11 ")) >= before + 1,
        5,
        "rapid reset counted",
    )


def test_resets_below_the_threshold_are_tolerated(gw: Gateway) -> None:
    """The control: a client that cancels a few streams keeps its connection."""
    sock, reader, _ = _raw(gw)
    sock.sendall(_open_and_reset(MAX_RESETS // 2))
    block = Encoder().encode(h2_request_headers("/after-some-resets"))
    sid = 1 + 2 * (MAX_RESETS // 2)
    sock.sendall(_headers_frame(sid, block, ["END_HEADERS", "END_STREAM"]))
    frame, _ = reader.until(
        lambda f: _is_goaway(f) or (isinstance(f, DataFrame) and f.stream_id == sid), timeout=10
    )
    assert isinstance(frame, DataFrame), f"connection ended: {frame}"
    assert frame.data == b"ok /after-some-resets"
    sock.close()


def test_server_side_resets_count_as_premature_resets(gw: Gateway) -> None:
    """MadeYouReset (CVE-2025-8671), rapid reset's sibling: the client makes the *server*
    reset each stream (here a stream WINDOW_UPDATE that overflows the window, which RFC 9113
    §6.9.1 makes a stream error) right after the request was dispatched upstream. The work
    per stream is the same as in rapid reset, so it must be counted the same way."""
    before = gw.backend.total_heads()
    sock, reader, _ = _raw(gw)
    enc = Encoder()
    out = bytearray()
    for i in range(300):
        sid = 1 + 2 * i
        block = enc.encode(h2_request_headers(f"/made-you-reset/{i}"))
        out += _headers_frame(sid, block, ["END_HEADERS", "END_STREAM"])
        out += WindowUpdateFrame(sid, window_increment=2**31 - 1).serialize()
    try:
        sock.sendall(bytes(out))
        goaway, _ = reader.until(_is_goaway, timeout=3)
    finally:
        sock.close()
        reached = gw.backend.total_heads() - before
    assert isinstance(goaway, GoAwayFrame)
    assert goaway.error_code == ENHANCE_YOUR_CALM, f"{reached} requests reached the backend"
    assert_fresh_connection_works(gw, "made-you-reset")


# -- CONTINUATION flood, HPACK bomb, oversized header lists ----------------------------------------


def test_continuation_flood_gets_goaway_and_close(gw: Gateway) -> None:
    sock, reader, _ = _raw(gw)
    block = Encoder().encode(h2_request_headers("/continuation-flood"))
    out = bytearray(_headers_frame(1, block, []))
    filler = Encoder()
    for i in range(200):  # far beyond h2MaxContinuationFrames (32) and h2's own 64
        c = ContinuationFrame(1)
        c.data = filler.encode([(f"x-c{i}".encode(), b"v")])
        out += c.serialize()
    try:
        sock.sendall(bytes(out))
    except (BrokenPipeError, ConnectionResetError):
        pass
    goaway, _ = reader.until(_is_goaway)
    assert isinstance(goaway, GoAwayFrame)
    assert goaway.error_code != NO_ERROR
    assert reader.closed(), "the connection must close after GOAWAY"
    sock.close()
    assert gw.backend.heads["/continuation-flood"] == 0
    assert_fresh_connection_works(gw, "continuation-flood")


def _hpack_bomb(path: str) -> bytes:
    """One ~4 KB header inserted into the dynamic table, then referenced 100 times."""
    block = bytearray(Encoder().encode(h2_request_headers(path)))
    name, value = b"x-bomb", b"b" * 4000  # entry size 4038 fits the default 4096 table
    block += b"\x40" + bytes(encode_integer(len(name), 7)) + name
    block += bytes(encode_integer(len(value), 7)) + value
    block += b"\xbe" * 100  # indexed field, index 62: the newest dynamic entry
    return bytes(block)


def test_hpack_bomb_is_refused(gw: Gateway) -> None:
    sock, reader, _ = _raw(gw)
    block = _hpack_bomb("/hpack-bomb")
    assert len(block) < 16384  # one frame, ~400 KB decoded
    sock.sendall(_headers_frame(1, block, ["END_HEADERS", "END_STREAM"]))
    frame, _ = reader.until(
        lambda f: _is_rst_or_goaway(1)(f) or (isinstance(f, HeadersFrame) and f.stream_id == 1)
    )
    assert not isinstance(frame, HeadersFrame), "the HPACK bomb was answered"
    if isinstance(frame, GoAwayFrame):
        assert frame.error_code in (ENHANCE_YOUR_CALM, PROTOCOL_ERROR)
    else:
        assert frame.error_code in (ENHANCE_YOUR_CALM, PROTOCOL_ERROR, REFUSED_STREAM)
    sock.close()
    assert gw.backend.heads["/hpack-bomb"] == 0
    assert_fresh_connection_works(gw, "hpack-bomb")


def test_oversized_header_list_is_refused(gw: Gateway) -> None:
    """70 KiB of literal header value, spread over HEADERS + CONTINUATION frames."""
    sock, reader, _ = _raw(gw)
    block = Encoder().encode(
        [*h2_request_headers("/h2-huge-header"), (b"x-big", b"a" * (70 * 1024))], huffman=False
    )
    frames = [block[i : i + 16384] for i in range(0, len(block), 16384)]
    out = bytearray(_headers_frame(1, frames[0], ["END_STREAM"]))
    for i, part in enumerate(frames[1:], start=1):
        c = ContinuationFrame(1, flags=["END_HEADERS"] if i == len(frames) - 1 else [])
        c.data = part
        out += c.serialize()
    sock.sendall(bytes(out))
    frame, _ = reader.until(
        lambda f: _is_rst_or_goaway(1)(f) or (isinstance(f, HeadersFrame) and f.stream_id == 1)
    )
    assert not isinstance(frame, HeadersFrame), "the oversized request was answered"
    assert frame.error_code != NO_ERROR
    sock.close()
    assert gw.backend.heads["/h2-huge-header"] == 0
    assert_fresh_connection_works(gw, "h2-huge-header")


# -- concurrent streams ----------------------------------------------------------------------------


def test_stream_over_max_concurrent_streams_is_refused(gw: Gateway) -> None:
    sock, reader, settings = _raw(gw)
    assert settings.settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == MAX_STREAMS
    enc = Encoder()
    out = bytearray()
    for i in range(MAX_STREAMS + 1):
        block = enc.encode(h2_request_headers(f"/echo/open/{i}", "POST"))
        out += _headers_frame(1 + 2 * i, block, ["END_HEADERS"])  # no END_STREAM: stays open
    sock.sendall(bytes(out))
    last = 1 + 2 * MAX_STREAMS
    frame, before = reader.until(_is_rst_or_goaway(last))
    if isinstance(frame, RstStreamFrame):
        assert frame.error_code in (REFUSED_STREAM, PROTOCOL_ERROR)
    else:
        assert isinstance(frame, GoAwayFrame)
        assert frame.error_code in (PROTOCOL_ERROR, REFUSED_STREAM, ENHANCE_YOUR_CALM)
        assert frame.last_stream_id < last
    # None of the ten allowed streams was reset before the eleventh was refused.
    assert not [f for f in before if isinstance(f, RstStreamFrame)], before
    sock.close()
    assert gw.backend.complete[f"/echo/open/{MAX_STREAMS}"] == 0
    assert_fresh_connection_works(gw, "max-streams")


def test_streams_up_to_the_limit_are_served(gw: Gateway) -> None:
    """The control: ten concurrent open uploads all complete."""
    s = H2Session(gw.port)
    s.until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
    sids = []
    for i in range(MAX_STREAMS):
        sid = s.conn.get_next_available_stream_id()
        s.conn.send_headers(sid, h2_request_headers(f"/echo/ten/{i}", "POST"))
        sids.append(sid)
    s.flush()
    for i, sid in enumerate(sids):
        s.conn.send_data(sid, f"body {i}".encode(), end_stream=True)
    s.flush()
    for i, sid in enumerate(sids):
        assert s.response(sid) == (200, f"body {i}".encode())
    s.close()
