"""Timeouts on downstream connections (DESIGN.md §4, "Timeouts").

With ``headerTimeoutSeconds: 1`` a request whose headers do not complete in time (slowloris)
gets ``408`` and a closed connection; with ``idleTimeoutSeconds: 1`` an idle keep-alive
connection is closed. The proxy sweeps its timeouts once a second, so each answer must come
within about 2.5 s. Every wait blocks on the socket with a timeout; nothing sleeps blindly.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import h2.events
import pytest
from hpack import Encoder
from hyperframe.frame import GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame
from limits_support import (
    PREFACE,
    Backend,
    FrameReader,
    Gateway,
    H2Session,
    Reader,
    assert_fresh_connection_works,
    connect,
    h2_request_headers,
    run_gateway,
    wait_until,
)

pytestmark = pytest.mark.timeout(30)

SETTINGS = "  headerTimeoutSeconds: 1\n  idleTimeoutSeconds: 1\n"
# Timeout (1 s) + one sweep interval (1 s) + slack.
DEADLINE_S = 2.5


@pytest.fixture(scope="module")
def gw(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with run_gateway(tmp_path_factory.mktemp("timeouts"), backend, SETTINGS) as g:
        yield g


def _expect_408_within_deadline(sock: socket.socket, started: float) -> None:
    sock.settimeout(DEADLINE_S + 1)
    reader = Reader(sock)
    resp = reader.response()
    elapsed = time.monotonic() - started
    assert resp.status == 408, resp
    assert reader.closed(), "the connection must be closed after 408"
    assert elapsed < DEADLINE_S, f"408 came after {elapsed:.2f}s"
    assert elapsed >= 0.9, f"408 came after only {elapsed:.2f}s, before the 1 s timeout"


# Slowloris scenarios. Each starts the attack on a fresh socket and returns when its clock
# starts; they run side by side (the sweep is per listener), then each test checks its own.


def _partial(data: bytes) -> Callable[[socket.socket], float]:
    def run(sock: socket.socket) -> float:
        started = time.monotonic()
        sock.sendall(data)
        return started

    return run


def _silent(sock: socket.socket) -> float:
    return time.monotonic()


def _trickle(sock: socket.socket) -> float:
    """A byte every 0.2 s: the connection always progresses, but the clock runs from the
    first byte, not from the last one."""
    started = time.monotonic()
    request = b"GET /slow/trickle HTTP/1.1\r\nHost: t\r\nX-Padding: " + b"a" * 200
    for i in range(len(request)):
        try:
            sock.sendall(request[i : i + 1])
        except (BrokenPipeError, ConnectionResetError):
            break
        # Waiting for the proxy's answer *is* the pacing.
        sock.settimeout(0.2)
        try:
            peek = sock.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            continue
        assert peek, "closed without a 408"
        break
    return started


def _second_request(sock: socket.socket) -> float:
    """A full request first; the next one on the keep-alive connection stops mid-headers."""
    reader = Reader(sock)
    sock.sendall(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
    resp = reader.response()
    assert (resp.status, resp.body) == (200, b"ok /first")
    assert not reader.buf
    started = time.monotonic()
    sock.sendall(b"GET /slow/second HTTP/1.1\r\nHost: t\r\n")
    return started


SLOWLORIS: dict[str, Callable[[socket.socket], float]] = {
    "partial-request-line": _partial(b"GET /slow/line"),
    "partial-headers": _partial(b"GET /slow/headers HTTP/1.1\r\nHost: t\r\nX-A: b"),
    "partial-h2-preface": _partial(b"PRI * HTTP/2.0\r\n"),
    "silent": _silent,
    "trickle": _trickle,
    "keepalive-second-request": _second_request,
}


@pytest.fixture(scope="module")
def slowloris(gw: Gateway) -> dict[str, BaseException | None]:
    """Run every scenario at once; map each to None (408 and close in time) or its failure."""

    def one(attack: Callable[[socket.socket], float]) -> BaseException | None:
        sock = connect(gw.port)
        try:
            _expect_408_within_deadline(sock, attack(sock))
        except (AssertionError, OSError) as exc:
            return exc
        finally:
            sock.close()
        return None

    with ThreadPoolExecutor(len(SLOWLORIS)) as pool:
        futures = {name: pool.submit(one, attack) for name, attack in SLOWLORIS.items()}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("scenario", list(SLOWLORIS))
def test_slow_headers_get_408_and_close(
    gw: Gateway, slowloris: dict[str, BaseException | None], scenario: str
) -> None:
    failure = slowloris[scenario]
    if failure is not None:
        raise AssertionError(f"{scenario}: {failure!r}") from failure
    assert not [p for p in gw.backend.heads if p.startswith("/slow/")], gw.backend.heads
    assert_fresh_connection_works(gw, f"slowloris-{scenario}")


def test_idle_keepalive_connection_is_closed(gw: Gateway) -> None:
    sock = connect(gw.port)
    sock.sendall(b"GET /idle HTTP/1.1\r\nHost: t\r\n\r\n")
    reader = Reader(sock)
    resp = reader.response()
    assert (resp.status, resp.body) == (200, b"ok /idle")
    assert resp.header("connection") != "close"
    done = time.monotonic()
    sock.settimeout(DEADLINE_S + 1)
    assert reader.closed(), "idle keep-alive connection was not closed"
    elapsed = time.monotonic() - done
    assert 0.9 <= elapsed < DEADLINE_S, f"closed after {elapsed:.2f}s"
    sock.close()
    assert_fresh_connection_works(gw, "idle")


def test_busy_keepalive_connection_is_not_closed_early(gw: Gateway) -> None:
    """The control: requests spaced under the idle timeout keep one connection alive."""
    sock = connect(gw.port)
    reader = Reader(sock)
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < 1.6:
        sock.sendall(f"GET /busy/{n} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        resp = reader.response()
        assert (resp.status, resp.body) == (200, f"ok /busy/{n}".encode())
        n += 1
        # Pace the requests: nothing should arrive in 0.4 s on an idle-but-open connection.
        sock.settimeout(0.4)
        try:
            data = sock.recv(1)
        except TimeoutError:
            continue
        raise AssertionError(f"connection ended mid-use ({data!r}) after {n} requests")
    sock.close()


def test_idle_h2_connection_is_closed_with_goaway(gw: Gateway) -> None:
    s = H2Session(gw.port)
    status, body = s.get("/idle-h2")
    assert (status, body) == (200, b"ok /idle-h2")
    done = time.monotonic()
    ev = s.until(lambda e: isinstance(e, h2.events.ConnectionTerminated), DEADLINE_S + 1)
    assert ev.error_code == 0, ev
    assert FrameReader(s.sock).closed(2.0)
    elapsed = time.monotonic() - done
    assert elapsed < DEADLINE_S + 0.5, f"closed after {elapsed:.2f}s"
    s.close()
    assert_fresh_connection_works(gw, "idle-h2")


def _h2_partial_headers(sock: socket.socket, sid: int, path: str) -> None:
    block = Encoder().encode(h2_request_headers(path))
    f = HeadersFrame(sid, flags=["END_STREAM"])  # no END_HEADERS: the block is incomplete
    f.data = block
    sock.sendall(f.serialize())


def test_h2_partial_header_block_times_out(gw: Gateway) -> None:
    sock = connect(gw.port)
    sock.sendall(PREFACE + SettingsFrame(0).serialize())
    started = time.monotonic()
    _h2_partial_headers(sock, 1, "/h2-slow-headers")
    reader = FrameReader(sock)
    goaway, _ = reader.until(lambda f: isinstance(f, GoAwayFrame), DEADLINE_S + 1)
    assert isinstance(goaway, GoAwayFrame) and goaway.error_code == 0, goaway
    elapsed = time.monotonic() - started
    assert reader.closed(2.0)
    assert elapsed < DEADLINE_S, f"GOAWAY after {elapsed:.2f}s"
    sock.close()
    assert gw.backend.heads["/h2-slow-headers"] == 0
    assert_fresh_connection_works(gw, "h2-slow-headers")


def test_h2_partial_header_block_times_out_with_a_stream_open(gw: Gateway) -> None:
    """Slowloris behind an open stream: a POST whose body never comes keeps stream 1 open,
    then a header block for stream 3 starts and never ends. No frame of any other stream may
    interleave a header block, so the connection is held hostage; the header timeout must end
    it all the same."""
    sock = connect(gw.port)
    sock.sendall(PREFACE + SettingsFrame(0).serialize())
    enc = Encoder()
    post = HeadersFrame(1, flags=["END_HEADERS"])
    post.data = enc.encode(h2_request_headers("/echo/h2-held-open", "POST"))
    sock.sendall(post.serialize())
    wait_until(lambda: gw.backend.heads["/echo/h2-held-open"] == 1, 5, "stream 1 forwarded")
    started = time.monotonic()
    partial = HeadersFrame(3, flags=["END_STREAM"])
    partial.data = enc.encode(h2_request_headers("/h2-slow-headers-2"))
    sock.sendall(partial.serialize())
    reader = FrameReader(sock)
    try:
        reader.until(
            lambda f: (
                isinstance(f, GoAwayFrame) or (isinstance(f, RstStreamFrame) and f.stream_id == 3)
            ),
            DEADLINE_S + 1,
        )
    finally:
        sock.close()
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE_S, f"answered after {elapsed:.2f}s"
    assert gw.backend.heads["/h2-slow-headers-2"] == 0
    assert_fresh_connection_works(gw, "h2-slow-headers-2")
