"""HTTP/1.1 framing limits (DESIGN.md §4, "HTTP/1.1 framing" and "Headers").

Every request smuggling vector is sent over a raw socket to a real gateway. The answer must be
``400`` with a closed connection, the backend must never see the request (nor a request
smuggled inside its body), the rejection must be counted in
``isthmus_downstream_rejections_total``, and a fresh connection must still be served. Header
blocks over ``maxHeaderBytes`` get ``431`` the same way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from limits_support import (
    Backend,
    Gateway,
    Reader,
    assert_fresh_connection_works,
    connect,
    exchange,
    run_gateway,
    wait_until,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def gw(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with run_gateway(tmp_path_factory.mktemp("framing"), backend) as g:
        yield g


# (id, request template, head_may_reach_backend). ``{p}`` is the request's unique path, ``{s}``
# a second unique path for a request smuggled in the body. The third field is True only where
# the head is valid and the error is in the body (a streaming proxy has forwarded the head by
# then); even there, the backend must never receive a complete request.
SMUGGLING: list[tuple[str, str, bool]] = [
    (
        "cl-then-te",
        "POST {p} HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\nGET {s} HTTP/1.1\r\nHost: t\r\n\r\n",
        False,
    ),
    (
        "te-then-cl",
        "POST {p} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
        "0\r\n\r\nGET {s} HTTP/1.1\r\nHost: t\r\n\r\n",
        False,
    ),
    (
        "two-content-length-equal",
        "POST {p} HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        False,
    ),
    (
        "two-content-length-differing",
        "POST {p} HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 36\r\n\r\n"
        "helloGET {s} HTTP/1.1\r\nHost: t\r\n\r\n",
        False,
    ),
    (
        "content-length-list",
        "POST {p} HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\n\r\nhello",
        False,
    ),
    (
        "content-length-plus-sign",
        "POST {p} HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello",
        False,
    ),
    (
        "te-gzip-chunked",
        "POST {p} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        False,
    ),
    (
        "te-chunked-gzip",
        "POST {p} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        False,
    ),
    (
        "te-identity",
        "POST {p} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n\r\n",
        False,
    ),
    (
        "te-twice",
        "POST {p} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        False,
    ),
    (
        "te-obs-fold",
        "POST {p} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        False,
    ),
    (
        "te-space-before-colon",
        "POST {p} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        False,
    ),
    (
        "te-in-http-1.0",
        "POST {p} HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        False,
    ),
    ("obs-fold-space", "GET {p} HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n", False),
    ("obs-fold-tab", "GET {p} HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n\tb\r\n\r\n", False),
    ("bare-cr-in-value", "GET {p} HTTP/1.1\r\nHost: t\r\nX-Bad: a\rb\r\n\r\n", False),
    ("bare-lf-line-endings", "GET {p} HTTP/1.1\nHost: t\nX-A: b\n\n", False),
    ("bare-lf-one-header", "GET {p} HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n", False),
    ("nul-in-value", "GET {p} HTTP/1.1\r\nHost: t\r\nX-Bad: a\x00b\r\n\r\n", False),
    ("nul-in-name", "GET {p} HTTP/1.1\r\nHost: t\r\nX-B\x00ad: a\r\n\r\n", False),
    (
        "chunk-size-not-hex",
        "POST {p} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        "zz\r\nhello\r\n0\r\n\r\n",
        True,
    ),
    (
        "chunk-size-overflow",
        "POST {p} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        True,
    ),
    ("missing-host", "GET {p} HTTP/1.1\r\nX-A: b\r\n\r\n", False),
    ("two-hosts", "GET {p} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", False),
]


def _rejections_with(gw: Gateway, status: int) -> float:
    return sum(n for reason, n in gw.rejections().items() if reason.startswith(f"{status} "))


@pytest.mark.parametrize(
    ("raw", "head_may_pass"),
    [pytest.param(raw, hp, id=name) for name, raw, hp in SMUGGLING],
)
def test_smuggling_vector_is_rejected_with_400_and_close(
    gw: Gateway, request: pytest.FixtureRequest, raw: str, head_may_pass: bool
) -> None:
    tag = f"{request.node.callspec.id}-{time.monotonic_ns()}"
    path, smuggled = f"/smuggle/{tag}", f"/smuggled/{tag}"
    before = _rejections_with(gw, 400)

    resp, reader = exchange(gw.port, raw.format(p=path, s=smuggled).encode("latin-1"))

    assert resp.status == 400, resp
    assert reader.closed(), "the connection must be closed after a framing error"
    reader.sock.close()
    assert_fresh_connection_works(gw, request.node.callspec.id)
    backend = gw.backend
    # The fresh request went through the same worker after the bad one, so anything the bad
    # one would have sent upstream has arrived by now.
    assert backend.complete[path] == 0, "the rejected request reached the backend"
    assert backend.heads[smuggled] == 0, "a request smuggled in the body reached the backend"
    if not head_may_pass:
        assert backend.heads[path] == 0, "the rejected request's head reached the backend"
    wait_until(lambda: _rejections_with(gw, 400) >= before + 1, 5, "rejection counted")


def test_valid_chunked_and_content_length_requests_pass(gw: Gateway) -> None:
    """The control for the vectors above: the same shapes, well-formed, are forwarded."""
    resp, reader = exchange(
        gw.port,
        b"POST /echo/chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        b"POST /echo/cl HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    )
    assert (resp.status, resp.body) == (200, b"hello world")
    resp2 = reader.response()
    assert (resp2.status, resp2.body) == (200, b"hello")
    reader.sock.close()


def _assert_431(gw: Gateway, raw: bytes, tag: str) -> None:
    before = _rejections_with(gw, 431)
    path = raw.split(b" ", 2)[1].decode()
    resp, reader = exchange(gw.port, raw)
    assert resp.status == 431, resp
    assert reader.closed(), "the connection must be closed after 431"
    reader.sock.close()
    assert_fresh_connection_works(gw, tag)
    assert gw.backend.heads[path] == 0
    wait_until(lambda: _rejections_with(gw, 431) >= before + 1, 5, "431 counted")


def test_one_huge_header_gets_431(gw: Gateway) -> None:
    raw = b"GET /huge-one HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n"
    _assert_431(gw, raw, "huge-one")


def test_many_small_headers_get_431(gw: Gateway) -> None:
    fields = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 30) for i in range(2000))  # ~80 KiB
    raw = b"GET /huge-many HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\n"
    assert len(fields) > 64 * 1024
    _assert_431(gw, raw, "huge-many")


def test_headers_just_under_the_limit_are_served(gw: Gateway) -> None:
    raw = b"GET /under-limit HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 60000 + b"\r\n\r\n"
    resp, reader = exchange(gw.port, raw)
    reader.sock.close()
    assert (resp.status, resp.body) == (200, b"ok /under-limit")


def test_huge_request_target_is_refused_and_closed(gw: Gateway) -> None:
    path = "/long/" + "a" * (70 * 1024)
    resp, reader = exchange(gw.port, f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    assert resp.status in (414, 431), resp
    assert reader.closed()
    reader.sock.close()
    assert gw.backend.heads[path] == 0
    assert_fresh_connection_works(gw, "long-target")


def test_body_after_a_split_head_is_not_counted_as_headers(gw: Gateway) -> None:
    """A valid upload whose head arrives in two segments, the second carrying the body."""
    sock = connect(gw.port)
    sock.sendall(b"POST /echo/split-head HTTP/1.1\r\nHost: t\r\n")
    # Client pacing, so that the two segments reach the proxy as two reads.
    time.sleep(0.2)
    body = b"b" * 100_000
    sock.sendall(b"Content-Length: 100000\r\n\r\n" + body)
    reader = Reader(sock)
    resp = reader.response()
    sock.close()
    assert resp.status == 200, resp
    assert resp.body == body
