"""Every downstream protocol against every upstream protocol, with streaming bodies.

Downstream: HTTP/1.1, h2c (prior knowledge), TLS with ALPN h2, TLS with ALPN http/1.1.
Upstream: an HTTP/1.1 backend (uvicorn) and an h2c backend (h2); the request header
``x-upstream: h2c`` selects the h2c one. For each of the 8 pairs:

- a 1 MB request body sent in pieces (chunked on HTTP/1.1, several DATA frames on HTTP/2)
  arrives whole (length and sha256 at the backend) and the backend saw its own protocol;
- a streamed response (64 chunks) arrives whole;
- ping-pong on ``/reflect``: the client sends a piece and reads its echo *before* sending
  the next, so neither direction may be buffered until the end of the body.

Trailers: HTTP/2 clients get the h2c backend's response trailers and the backend gets the
client's request trailers; an HTTP/1.1 client that sent ``TE: trailers`` gets the response
trailers in the chunked trailer section. (The HTTP/1.1 backend, uvicorn, cannot send
trailers, so trailers are only checked against the h2c backend.)
"""

from __future__ import annotations

import hashlib
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import trustme

from tests.gateway.e2e.helpers import (
    ConfigDir,
    H2Client,
    backend_service_yaml,
    client_tls_context,
    http_route_yaml,
    https_listener,
    open_socket,
    parse_head,
    read_chunk,
    read_response,
    read_trailers,
    read_until,
    settings_yaml,
    start_gateway,
    tls_secret_yaml,
)
from tests.support.backends import H2cBackend, HttpBackend, payload_chunk, stream_sha256
from tests.support.gateway import free_port

HOST = "matrix.example.test"
DOWNSTREAMS = ["h1", "h2c", "tls-h2", "tls-h1"]
UPSTREAMS = ["http1", "h2c"]


@dataclass
class Ports:
    http: int
    tls: int
    ca: trustme.CA


@pytest.fixture(scope="module")
def ports(
    tmp_path_factory: pytest.TempPathFactory,
    ca: trustme.CA,
    http_backend: HttpBackend,
    h2c_backend: H2cBackend,
) -> Iterator[Ports]:
    cfg = ConfigDir(tmp_path_factory.mktemp("matrix") / "cfg")
    http_port, tls_port = free_port(), free_port()
    cfg.gateway(http_port, https_listener("https", tls_port, "cert", HOST))
    cfg.write("secret.yaml", tls_secret_yaml("cert", ca.issue_cert(HOST)))
    cfg.write("h1.yaml", backend_service_yaml("up-h1", http_backend.port))
    cfg.write(
        "h2.yaml",
        backend_service_yaml("up-h2c", h2c_backend.port, app_protocol="kubernetes.io/h2c"),
    )
    rules = (
        "  - matches: [{headers: [{name: x-upstream, value: h2c}]}]\n"
        "    backendRefs: [{name: up-h2c, port: 80}]\n"
        "  - backendRefs: [{name: up-h1, port: 80}]\n"
    )
    cfg.write("route.yaml", http_route_yaml("matrix", rules))
    cfg.write("settings.yaml", settings_yaml(drainTimeoutSeconds=2))
    gw = start_gateway(cfg)
    yield Ports(http_port, tls_port, ca)
    gw.stop()


# -- one client interface over both protocols ---------------------------------------------------


class H1Down:
    def __init__(self, ports: Ports, tls: bool) -> None:
        ctx = client_tls_context(ports.ca, ["http/1.1"]) if tls else None
        self.sock = open_socket(ports.tls if tls else ports.http, tls=ctx, sni=HOST)
        if tls:
            assert isinstance(self.sock, ssl.SSLSocket)
            assert self.sock.selected_alpn_protocol() == "http/1.1"
        self.buf = bytearray()
        self.got_head = False
        self.pending = bytearray()

    def _head(self, method: str, path: str, headers: dict[str, str], chunked: bool) -> None:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def request(
        self, method: str, path: str, headers: dict[str, str], pieces: list[bytes] | None = None
    ) -> tuple[int, bytes]:
        self._head(method, path, headers, pieces is not None)
        if pieces is not None:
            for piece in pieces:
                self.sock.sendall(b"%x\r\n%b\r\n" % (len(piece), piece))
            self.sock.sendall(b"0\r\n\r\n")
        status, _, body = read_response(self.sock, self.buf)
        return status, body

    def open_stream(self, path: str, headers: dict[str, str]) -> None:
        self._head("POST", path, headers, True)

    def send(self, piece: bytes) -> None:
        self.sock.sendall(b"%x\r\n%b\r\n" % (len(piece), piece))

    def read(self, n: int) -> bytes:
        if not self.got_head:
            status, headers = parse_head(read_until(self.sock, b"\r\n\r\n", self.buf))
            assert status == 200 and headers.get("transfer-encoding") == "chunked"
            self.got_head = True
        while len(self.pending) < n:
            chunk = read_chunk(self.sock, self.buf)
            assert chunk, "the response ended early"
            self.pending += chunk
        out = bytes(self.pending[:n])
        del self.pending[:n]
        return out

    def finish(self) -> bytes:
        self.sock.sendall(b"0\r\n\r\n")
        rest = bytes(self.pending)
        while chunk := read_chunk(self.sock, self.buf):
            rest += chunk
        read_trailers(self.sock, self.buf)
        return rest

    def close(self) -> None:
        self.sock.close()


class H2Down:
    def __init__(self, ports: Ports, tls: bool) -> None:
        ctx = client_tls_context(ports.ca, ["h2"]) if tls else None
        sock = open_socket(ports.tls if tls else ports.http, tls=ctx, sni=HOST)
        if tls:
            assert isinstance(sock, ssl.SSLSocket)
            assert sock.selected_alpn_protocol() == "h2"
        self.client = H2Client(sock, scheme="https" if tls else "http")
        self.sid = 0
        self.taken = 0

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        pieces: list[bytes] | None = None,
        trailers: list[tuple[str, str]] | None = None,
    ) -> tuple[int, bytes]:
        c = self.client
        sid = c.request(method, path, HOST, end=pieces is None, headers=list(headers.items()))
        for piece in pieces or ():
            c.send(sid, piece)
        if pieces is not None:
            if trailers:
                c.conn.send_headers(sid, trailers, end_stream=True)
                c.flush()
            else:
                c.end(sid)
        self.sid = sid
        return c.response(sid)

    def open_stream(self, path: str, headers: dict[str, str]) -> None:
        self.sid = self.client.request("POST", path, HOST, end=False, headers=list(headers.items()))

    def send(self, piece: bytes) -> None:
        self.client.send(self.sid, piece)

    def read(self, n: int) -> bytes:
        c = self.client
        c.wait(lambda: len(c.data[self.sid]) >= self.taken + n)
        out = bytes(c.data[self.sid][self.taken : self.taken + n])
        self.taken += n
        return out

    def finish(self) -> bytes:
        c = self.client
        c.end(self.sid)
        c.wait(lambda: self.sid in c.ended)
        assert c.headers[self.sid][":status"] == "200"
        return bytes(c.data[self.sid][self.taken :])

    def close(self) -> None:
        self.client.close()


def connect(ports: Ports, downstream: str) -> H1Down | H2Down:
    tls = downstream.startswith("tls")
    if downstream in ("h1", "tls-h1"):
        return H1Down(ports, tls)
    return H2Down(ports, tls)


def upstream_headers(upstream: str) -> dict[str, str]:
    return {"x-upstream": "h2c"} if upstream == "h2c" else {}


# -- the matrix ---------------------------------------------------------------------------------

matrix = pytest.mark.parametrize(
    ("downstream", "upstream"), [(d, u) for d in DOWNSTREAMS for u in UPSTREAMS]
)


@matrix
def test_streamed_upload(ports: Ports, downstream: str, upstream: str) -> None:
    pieces = [payload_chunk(i, 64 * 1024) for i in range(16)]
    client = connect(ports, downstream)
    try:
        status, body = client.request("POST", "/echo", upstream_headers(upstream), pieces)
    finally:
        client.close()
    assert status == 200
    got = json.loads(body)
    assert got["backend"] == ("h2c-shared" if upstream == "h2c" else "http-shared")
    assert got["http_version"] == ("2" if upstream == "h2c" else "1.1")
    assert got["body_bytes"] == 16 * 64 * 1024
    assert got["body_sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


@matrix
def test_streamed_download(ports: Ports, downstream: str, upstream: str) -> None:
    client = connect(ports, downstream)
    try:
        status, body = client.request(
            "GET", "/stream?chunks=64&size=16384", upstream_headers(upstream)
        )
    finally:
        client.close()
    assert status == 200
    assert len(body) == 64 * 16384
    assert hashlib.sha256(body).hexdigest() == stream_sha256(64, 16384)


@matrix
def test_ping_pong_streaming_both_ways(ports: Ports, downstream: str, upstream: str) -> None:
    client = connect(ports, downstream)
    try:
        client.open_stream("/reflect", upstream_headers(upstream))
        for i in range(5):
            piece = payload_chunk(i, 1000 + 100 * i)
            client.send(piece)
            # The echo of this piece must arrive while the request body is still open.
            assert client.read(len(piece)) == piece
        assert client.finish() == b""
    finally:
        client.close()


@pytest.mark.parametrize("downstream", ["h2c", "tls-h2"])
def test_response_trailers_reach_http2_client(ports: Ports, downstream: str) -> None:
    client = connect(ports, downstream)
    assert isinstance(client, H2Down)
    try:
        status, body = client.request("GET", "/trailers", {"x-upstream": "h2c", "te": "trailers"})
        trailers = client.client.trailers.get(client.sid)
    finally:
        client.close()
    assert status == 200 and json.loads(body)["path"] == "/trailers"
    assert trailers == {"x-trailer-one": "1", "x-trailer-backend": "h2c-shared"}


@pytest.mark.parametrize("downstream", ["h2c", "tls-h2"])
def test_request_trailers_reach_h2c_backend(ports: Ports, downstream: str) -> None:
    client = connect(ports, downstream)
    assert isinstance(client, H2Down)
    try:
        status, body = client.request(
            "POST",
            "/echo",
            {"x-upstream": "h2c", "te": "trailers"},
            [b"abc", b"def"],
            trailers=[("x-checksum", "42")],
        )
    finally:
        client.close()
    assert status == 200
    got = json.loads(body)
    assert got["body_bytes"] == 6
    assert got["trailers"] == {"x-checksum": "42"}


def test_response_trailers_reach_http11_client(ports: Ports) -> None:
    """An HTTP/1.1 client that sent ``TE: trailers`` gets them in the chunked trailer."""
    with open_socket(ports.http) as sock:
        sock.sendall(
            f"GET /stream?chunks=2&size=10&trailers=1 HTTP/1.1\r\nHost: {HOST}\r\n"
            "x-upstream: h2c\r\nTE: trailers\r\n\r\n".encode()
        )
        buf = bytearray()
        status, headers = parse_head(read_until(sock, b"\r\n\r\n", buf))
        assert status == 200 and headers.get("transfer-encoding") == "chunked"
        body = b""
        while chunk := read_chunk(sock, buf):
            body += chunk
        trailers = read_trailers(sock, buf)
    assert hashlib.sha256(body).hexdigest() == stream_sha256(2, 10)
    assert trailers == {"x-stream-trailer": "done"}
