"""HTTP/1.1 semantics through the real gateway, with httpx and raw sockets.

Keep-alive connection reuse, pipelining (two requests in one write, two responses in
order), chunked request bodies (a generator body) and chunked responses, ``Expect:
100-continue`` (the proxy answers ``100 Continue`` before the body is sent), HEAD (no body
and the Content-Length of the GET), and 20 MB bodies in both directions with their sha256
checked end to end.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import httpx
import pytest

from tests.gateway.e2e.helpers import (
    ConfigDir,
    backend_service_yaml,
    http_route_yaml,
    open_socket,
    parse_head,
    read_response,
    read_until,
    settings_yaml,
    start_gateway,
)
from tests.support.backends import HttpBackend, bytes_sha256, payload_chunk, stream_sha256
from tests.support.gateway import GatewayProcess, free_port

MB = 1024 * 1024


@pytest.fixture(scope="module")
def backend() -> Iterator[HttpBackend]:
    b = HttpBackend("h1-sem").start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory, backend: HttpBackend) -> Iterator[int]:
    cfg = ConfigDir(tmp_path_factory.mktemp("http1") / "cfg")
    http_port = free_port()
    cfg.gateway(http_port)
    cfg.write("backend.yaml", backend_service_yaml("echo", backend.port))
    cfg.write("route.yaml", http_route_yaml("all", "  - backendRefs: [{name: echo, port: 80}]\n"))
    cfg.write("settings.yaml", settings_yaml(drainTimeoutSeconds=2))
    gw: GatewayProcess = start_gateway(cfg)
    yield http_port
    gw.stop()


def test_keep_alive_reuses_one_connection(port: int) -> None:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:
        addresses = set()
        for i in range(5):
            r = client.get("/echo", params={"i": i})
            assert r.status_code == 200 and r.json()["query"] == f"i={i}"
            assert r.headers.get("connection", "").lower() != "close"
            addresses.add(r.extensions["network_stream"].get_extra_info("client_addr"))
    assert len(addresses) == 1


def test_pipelined_requests_answered_in_order(port: int) -> None:
    with open_socket(port) as sock:
        sock.sendall(
            b"GET /slow?ms=300&n=1 HTTP/1.1\r\nHost: pipe.test\r\n\r\n"
            b"GET /echo?n=2 HTTP/1.1\r\nHost: pipe.test\r\n\r\n"
        )
        buf = bytearray()
        first = read_response(sock, buf)
        second = read_response(sock, buf)
    assert first[0] == 200 and second[0] == 200
    assert json.loads(first[2])["query"] == "ms=300&n=1"
    assert json.loads(second[2])["query"] == "n=2"


def test_chunked_request_body_from_generator(port: int, backend: HttpBackend) -> None:
    parts = [payload_chunk(i, 10_000 + i) for i in range(20)]
    expected = hashlib.sha256(b"".join(parts)).hexdigest()

    def body() -> Iterator[bytes]:
        yield from parts

    r = httpx.post(f"http://127.0.0.1:{port}/echo?chunked=1", content=body(), timeout=30)
    assert r.status_code == 200
    got = r.json()
    assert got["body_bytes"] == sum(len(p) for p in parts)
    assert got["body_sha256"] == expected
    seen = backend.wait_for(lambda s: s.query == "chunked=1")
    # Streamed on, not buffered into a Content-Length body.
    assert seen.headers.get("transfer-encoding") == "chunked", seen.headers
    assert "content-length" not in seen.headers


def test_chunked_response_streams_to_client(port: int) -> None:
    with open_socket(port) as sock:
        sock.sendall(b"GET /stream?chunks=12&size=3000 HTTP/1.1\r\nHost: s.test\r\n\r\n")
        status, headers, body = read_response(sock, bytearray())
    assert status == 200
    assert headers.get("transfer-encoding", "").lower() == "chunked"
    assert "content-length" not in headers
    assert hashlib.sha256(body).hexdigest() == stream_sha256(12, 3000)


def test_expect_100_continue_answered_before_body(port: int, backend: HttpBackend) -> None:
    with open_socket(port) as sock:
        sock.sendall(
            b"POST /echo?expect=1 HTTP/1.1\r\nHost: e.test\r\nContent-Length: 11\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        buf = bytearray()
        # Nothing of the body has been sent: the interim answer must come first.
        interim, _ = parse_head(read_until(sock, b"\r\n\r\n", buf, timeout_s=5))
        assert interim == 100
        sock.sendall(b"hello world")
        status, _, body = read_response(sock, buf)
    assert status == 200
    got = json.loads(body)
    assert got["body_bytes"] == 11
    assert got["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()


def test_head_has_no_body_and_keeps_content_length(port: int) -> None:
    r = httpx.head(f"http://127.0.0.1:{port}/bytes?size=12345")
    assert r.status_code == 200
    assert r.headers["content-length"] == "12345"
    assert r.content == b""
    # On the wire: the next response on the same connection follows the HEAD head directly.
    with open_socket(port) as sock:
        sock.sendall(b"HEAD /bytes?size=777 HTTP/1.1\r\nHost: h.test\r\n\r\n")
        buf = bytearray()
        status, headers = parse_head(read_until(sock, b"\r\n\r\n", buf))
        assert status == 200 and headers["content-length"] == "777"
        sock.sendall(b"GET /echo?after=head HTTP/1.1\r\nHost: h.test\r\n\r\n")
        status, _, body = read_response(sock, buf)
    assert status == 200 and json.loads(body)["query"] == "after=head"


def test_large_upload_20mb(port: int) -> None:
    size = 20 * MB
    block = payload_chunk(7, MB)
    expected = hashlib.sha256(block * 20).hexdigest()

    def body() -> Iterator[bytes]:
        for _ in range(size // MB):
            yield block

    r = httpx.put(
        f"http://127.0.0.1:{port}/echo",
        content=body(),
        headers={"content-length": str(size)},
        timeout=60,
    )
    assert r.status_code == 200
    assert r.json()["body_bytes"] == size
    assert r.json()["body_sha256"] == expected


def test_large_download_20mb_fixed_length(port: int) -> None:
    size = 20 * MB
    digest = hashlib.sha256()
    total = 0
    with httpx.stream("GET", f"http://127.0.0.1:{port}/bytes?size={size}", timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(size)
        for chunk in r.iter_raw():
            digest.update(chunk)
            total += len(chunk)
    assert total == size
    assert digest.hexdigest() == bytes_sha256(size)


def test_large_download_20mb_chunked(port: int) -> None:
    digest = hashlib.sha256()
    with httpx.stream(
        "GET", f"http://127.0.0.1:{port}/stream?chunks=320&size=65536", timeout=60
    ) as r:
        assert r.headers.get("transfer-encoding") == "chunked"
        for chunk in r.iter_raw():
            digest.update(chunk)
    assert digest.hexdigest() == stream_sha256(320, 65536)


def test_connection_close_request_is_honoured(port: int) -> None:
    with open_socket(port) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: c.test\r\nConnection: close\r\n\r\n")
        buf = bytearray()
        status, headers, _ = read_response(sock, buf)
        assert status == 200
        assert headers.get("connection", "").lower() == "close"
        sock.settimeout(5)
        try:
            rest = sock.recv(1)
        except (TimeoutError, ConnectionResetError) as exc:  # pragma: no cover - diagnostic
            raise AssertionError("the proxy did not close the connection") from exc
        assert rest == b""
