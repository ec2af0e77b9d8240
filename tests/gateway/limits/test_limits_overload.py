"""Overload: ``maxConnectionsPerListener`` (DESIGN.md §4, "Overload").

With the limit at 5, five open keep-alive connections (each has completed a request and stays
open) fill the listener; a sixth is closed at once without being served. Once the five close,
a new connection is served again.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from limits_support import (
    Backend,
    Gateway,
    Reader,
    assert_fresh_connection_works,
    connect,
    run_gateway,
    wait_until,
)

pytestmark = pytest.mark.timeout(30)

LIMIT = 5


@pytest.fixture(scope="module")
def gw(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    settings = f"  maxConnectionsPerListener: {LIMIT}\n"
    with run_gateway(tmp_path_factory.mktemp("overload"), backend, settings) as g:
        yield g


def _served(gw: Gateway, path: str) -> bool:
    """True when a new connection gets a 200 for ``path``; False when it is turned away."""
    sock = connect(gw.port, timeout=3)
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        resp = Reader(sock).response()
    except (ConnectionError, BrokenPipeError):
        return False
    finally:
        sock.close()
    assert resp.status == 200, resp
    return True


def test_connection_over_the_limit_is_closed_at_once(gw: Gateway) -> None:
    before = gw.rejections().get("overflow", 0)
    held: list[socket.socket] = []
    try:
        for i in range(LIMIT):
            sock = connect(gw.port)
            sock.sendall(f"GET /held/{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            resp = Reader(sock).response()
            assert (resp.status, resp.body) == (200, f"ok /held/{i}".encode())
            held.append(sock)

        extra = connect(gw.port, timeout=3)
        try:
            extra.sendall(b"GET /over-limit HTTP/1.1\r\nHost: t\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            data = extra.recv(65536)
        except ConnectionResetError:
            data = b""
        except TimeoutError:
            raise AssertionError("the connection over the limit was left open") from None
        extra.close()
        assert data == b"", f"the connection over the limit got an answer: {data!r}"
        assert gw.backend.heads["/over-limit"] == 0

        # The held connections are still fine.
        held[0].sendall(b"GET /held/again HTTP/1.1\r\nHost: t\r\n\r\n")
        resp = Reader(held[0]).response()
        assert (resp.status, resp.body) == (200, b"ok /held/again")
        wait_until(lambda: gw.rejections().get("overflow", 0) >= before + 1, 5, "overflow counted")
    finally:
        for sock in held:
            sock.close()

    # Closed connections leave the listener's count as soon as the proxy sees them go.
    wait_until(lambda: _served(gw, "/after-overload"), 5, "a new connection served again")
    assert_fresh_connection_works(gw, "overload")
