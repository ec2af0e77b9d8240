"""Timeouts on downstream connections (DESIGN.md §4, "Timeouts").

With ``headerTimeoutSeconds: 1`` a request whose headers do not complete in time (slowloris)
gets ``408`` and a closed connection; with ``idleTimeoutSeconds: 1`` an idle keep-alive
connection is closed. The proxy sweeps its timeouts once a second, so each answer must come
within about 2.5 s. Every wait blocks on the socket with a timeout; nothing sleeps blindly.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import h2.events
import pytest
from limits_support import (
    Backend,
    FrameReader,
    Gateway,
    H2Session,
    Reader,
    assert_fresh_connection_works,
    connect,
    run_gateway,
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


@pytest.mark.parametrize(
    "partial",
    [
        pytest.param(b"GET /slow", id="partial-request-line"),
        pytest.param(b"GET /slow HTTP/1.1\r\nHost: t\r\nX-A: b", id="partial-headers"),
    ],
)
def test_slow_headers_get_408_and_close(gw: Gateway, partial: bytes) -> None:
    sock = connect(gw.port)
    started = time.monotonic()
    sock.sendall(partial)
    _expect_408_within_deadline(sock, started)
    sock.close()
    assert gw.backend.heads["/slow"] == 0
    assert_fresh_connection_works(gw, "slow-headers")


def test_trickled_headers_get_408_despite_progress(gw: Gateway) -> None:
    """Slowloris proper: a byte at a time keeps the connection busy, but the clock runs from
    the first byte, not from the last one."""
    sock = connect(gw.port)
    started = time.monotonic()
    request = b"GET /trickle HTTP/1.1\r\nHost: t\r\nX-Padding: " + b"a" * 200
    for i in range(len(request)):
        try:
            sock.sendall(request[i : i + 1])
        except (BrokenPipeError, ConnectionResetError):
            break
        # Waiting for the proxy's answer *is* the pacing: 0.2 s between bytes.
        sock.settimeout(0.2)
        try:
            peek = sock.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            continue
        assert peek, "closed without a 408"
        break
    _expect_408_within_deadline(sock, started)
    sock.close()
    assert gw.backend.heads["/trickle"] == 0
    assert_fresh_connection_works(gw, "trickle")


def test_silent_connection_gets_408_and_close(gw: Gateway) -> None:
    sock = connect(gw.port)
    started = time.monotonic()
    _expect_408_within_deadline(sock, started)
    sock.close()
    assert_fresh_connection_works(gw, "silent")


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
