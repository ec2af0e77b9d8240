"""Draining on SIGTERM, with real connections open when the signal arrives.

A slow HTTP/1.1 request in flight on a keep-alive connection completes with 200 and
``Connection: close`` (then the connection closes); new connections are refused while it
is still running; the process exits 0. An HTTP/2 client gets a graceful GOAWAY, and its
in-flight stream (a download, or an upload still sending) should still complete. A request
longer than ``drainTimeoutSeconds`` is cut off at the deadline and the process still exits
promptly. ``POST /drain`` on the admin port stops
accepting and turns ``/ready`` to 503 while the process stays up.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.gateway.e2e.helpers import (
    ConfigDir,
    H2Client,
    backend_service_yaml,
    http_route_yaml,
    open_socket,
    read_response,
    settings_yaml,
    wait_until,
)
from tests.support.backends import HttpBackend
from tests.support.gateway import GatewayProcess, free_port


@pytest.fixture(scope="module")
def backend() -> Iterator[HttpBackend]:
    b = HttpBackend("drain").start()
    yield b
    b.stop()


@pytest.fixture
def gateway(tmp_path: Path, backend: HttpBackend) -> Iterator[tuple[GatewayProcess, int]]:
    cfg = ConfigDir(tmp_path / "cfg")
    port = free_port()
    cfg.gateway(port)
    cfg.write("svc.yaml", backend_service_yaml("drain", backend.port))
    cfg.write("route.yaml", http_route_yaml("r", "  - backendRefs: [{name: drain, port: 80}]\n"))
    cfg.write("settings.yaml", settings_yaml(drainTimeoutSeconds=3))
    gw = GatewayProcess(cfg.path).start()
    yield gw, port
    gw.stop()


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            # Accepted by a socket nobody serves any more would hang or be reset; a live
            # listener answers. Either way the connect itself must fail to count as refused.
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def _exit_code(gw: GatewayProcess, timeout_s: float) -> int:
    assert gw.proc is not None
    return gw.proc.wait(timeout_s)


def test_sigterm_completes_in_flight_http1_request(
    gateway: tuple[GatewayProcess, int], backend: HttpBackend
) -> None:
    gw, port = gateway
    with open_socket(port) as sock:
        buf = bytearray()
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: d.test\r\n\r\n")
        status, headers, _ = read_response(sock, buf)
        assert status == 200 and headers.get("connection", "").lower() != "close"
        sock.sendall(b"GET /slow?ms=1500&tag=drain1 HTTP/1.1\r\nHost: d.test\r\n\r\n")
        backend.wait_for(lambda s: s.query == "ms=1500&tag=drain1")
        signalled = time.monotonic()
        gw.signal(signal.SIGTERM)
        # Stop accepting: new connections are refused while the old request still runs.
        wait_until(lambda: _refused(port), timeout_s=1.0, what="new connections refused")
        assert time.monotonic() - signalled < 1.2
        status, headers, body = read_response(sock, buf)
        assert status == 200
        assert json.loads(body)["query"] == "ms=1500&tag=drain1"
        assert headers.get("connection", "").lower() == "close"
        sock.settimeout(5)
        assert sock.recv(1) == b""  # and then it closed the connection
    assert _exit_code(gw, 10) == 0


def test_sigterm_sends_goaway_to_http2_client(
    gateway: tuple[GatewayProcess, int], backend: HttpBackend
) -> None:
    gw, port = gateway
    client = H2Client(open_socket(port))
    try:
        client.settle()
        sid = client.request("GET", "/slow?ms=1000&tag=goaway", "d.test")
        backend.wait_for(lambda s: s.query == "ms=1000&tag=goaway")
        gw.signal(signal.SIGTERM)
        client.wait(lambda: client.goaway is not None, timeout_s=5)
        assert client.goaway is not None
        assert client.goaway.error_code == 0  # NO_ERROR: a graceful GOAWAY
        assert client.goaway.last_stream_id >= sid  # the open stream was accepted
        assert sid not in client.ended, "the stream ended before GOAWAY; test is void"
    finally:
        client.close()
    assert _exit_code(gw, 10) == 0


def test_http2_stream_in_flight_at_sigterm_completes(
    gateway: tuple[GatewayProcess, int], backend: HttpBackend
) -> None:
    gw, port = gateway
    client = H2Client(open_socket(port))
    try:
        client.settle()  # the client sends nothing after the request
        sid = client.request("GET", "/slow?ms=1500&tag=drain2", "d.test")
        backend.wait_for(lambda s: s.query == "ms=1500&tag=drain2")
        gw.signal(signal.SIGTERM)
        client.wait(lambda: client.goaway is not None, timeout_s=5)
        status, body = client.response(sid, timeout_s=10)
        assert status == 200
        assert json.loads(body)["query"] == "ms=1500&tag=drain2"
    finally:
        client.close()
    assert _exit_code(gw, 10) == 0


def test_http2_upload_in_flight_at_sigterm_completes(
    gateway: tuple[GatewayProcess, int], backend: HttpBackend
) -> None:
    gw, port = gateway
    client = H2Client(open_socket(port))
    try:
        client.settle()
        sid = client.request("POST", "/echo?tag=drain3", "d.test", body=b"first half,", end=False)
        backend.wait_for(lambda s: s.query == "tag=drain3")
        gw.signal(signal.SIGTERM)
        client.wait(lambda: client.goaway is not None, timeout_s=5)
        # The stream was accepted before GOAWAY, so it may finish: send the rest of its body.
        client.send(sid, b" second half", end=True)
        status, body = client.response(sid, timeout_s=10)
        assert status == 200
        assert json.loads(body)["body_bytes"] == len(b"first half, second half")
    finally:
        client.close()
    assert _exit_code(gw, 10) == 0


def test_drain_deadline_cuts_long_requests(
    gateway: tuple[GatewayProcess, int], backend: HttpBackend
) -> None:
    gw, port = gateway  # drainTimeoutSeconds: 3
    with ThreadPoolExecutor(1) as pool:
        long = pool.submit(httpx.get, f"http://127.0.0.1:{port}/slow?ms=20000&tag=cut", timeout=30)
        backend.wait_for(lambda s: s.query == "ms=20000&tag=cut")
        signalled = time.monotonic()
        gw.signal(signal.SIGTERM)
        assert _exit_code(gw, 15) == 0
        took = time.monotonic() - signalled
        with pytest.raises(httpx.HTTPError):
            long.result(timeout=10)
    assert 2.5 <= took < 8, f"exited {took:.1f}s after SIGTERM with a 3 s drain deadline"


def test_admin_drain_stops_accepting_and_unreadies(gateway: tuple[GatewayProcess, int]) -> None:
    gw, port = gateway
    assert httpx.get(f"http://127.0.0.1:{port}/echo").status_code == 200
    r = httpx.post(f"{gw.admin_url}/drain", timeout=15)
    assert r.status_code == 200 and r.json() == {"draining": True}
    assert httpx.get(f"{gw.admin_url}/ready").status_code == 503
    wait_until(lambda: _refused(port), timeout_s=2, what="listener closed after /drain")
    assert gw.proc is not None and gw.proc.poll() is None  # still running until SIGTERM
