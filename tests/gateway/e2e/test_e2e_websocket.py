"""WebSocket through the gateway: the ``websockets`` client against a uvicorn echo server.

The HTTP/1.1 Upgrade is forwarded, the proxy tunnels the connection, and messages flow both
ways (text, binary, one of 1 MiB); the client closes with 1000 and gets the server's close
frame back. Runs over the plain listener (ws://) and the HTTPS listener (wss://, ALPN
http/1.1).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator

import pytest
import trustme
from websockets.sync.client import ClientConnection, connect

from tests.gateway.e2e.helpers import (
    ConfigDir,
    backend_service_yaml,
    http_route_yaml,
    https_listener,
    settings_yaml,
    start_gateway,
    tls_secret_yaml,
)
from tests.support.backends import HttpBackend
from tests.support.gateway import free_port

HOST = "ws.example.test"


@pytest.fixture(scope="module")
def backend() -> Iterator[HttpBackend]:
    b = HttpBackend("ws-backend").start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def ports(
    tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA, backend: HttpBackend
) -> Iterator[tuple[int, int]]:
    cfg = ConfigDir(tmp_path_factory.mktemp("ws") / "cfg")
    http_port, tls_port = free_port(), free_port()
    cfg.gateway(http_port, https_listener("https", tls_port, "cert", HOST))
    cfg.write("secret.yaml", tls_secret_yaml("cert", ca.issue_cert(HOST)))
    cfg.write("backend.yaml", backend_service_yaml("ws", backend.port))
    cfg.write("route.yaml", http_route_yaml("ws", "  - backendRefs: [{name: ws, port: 80}]\n"))
    cfg.write("settings.yaml", settings_yaml(drainTimeoutSeconds=2))
    gw = start_gateway(cfg)
    yield http_port, tls_port
    gw.stop()


# The client waits this long for the server to close TCP after the closing handshake.
CLOSE_TIMEOUT_S = 1.0


@pytest.fixture(params=["ws", "wss"])
def ws(
    request: pytest.FixtureRequest, ports: tuple[int, int], ca: trustme.CA
) -> Iterator[ClientConnection]:
    if request.param == "ws":
        conn = connect(
            f"ws://127.0.0.1:{ports[0]}/ws",
            max_size=None,
            open_timeout=10,
            close_timeout=CLOSE_TIMEOUT_S,
        )
    else:
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        sock = socket.create_connection(("127.0.0.1", ports[1]), timeout=10)
        conn = connect(
            f"wss://{HOST}:{ports[1]}/ws",
            sock=sock,
            ssl=ctx,
            server_hostname=HOST,
            max_size=None,
            open_timeout=10,
            close_timeout=CLOSE_TIMEOUT_S,
        )
    with conn:
        yield conn


def test_echo_text_and_binary(ws: ClientConnection, backend: HttpBackend) -> None:
    assert ws.response is not None and ws.response.status_code == 101
    assert ws.response.headers["x-backend"] == "ws-backend"
    for i in range(10):
        ws.send(f"text message {i}")
        assert ws.recv(timeout=5) == f"text message {i}"
        ws.send(bytes([i]) * (i + 1))
        assert ws.recv(timeout=5) == bytes([i]) * (i + 1)
    seen = backend.wait_for(lambda s: s.path == "/ws")
    assert seen.headers["upgrade"].lower() == "websocket"


def test_many_messages_in_flight_and_a_large_one(ws: ClientConnection) -> None:
    for i in range(50):
        ws.send(f"burst {i}")
    assert [ws.recv(timeout=5) for _ in range(50)] == [f"burst {i}" for i in range(50)]
    big = bytes(range(256)) * 4096  # 1 MiB
    ws.send(big)
    assert ws.recv(timeout=10) == big


def test_clean_close(ws: ClientConnection, request: pytest.FixtureRequest) -> None:
    ws.send("bye")
    assert ws.recv(timeout=5) == "bye"
    started = time.monotonic()
    ws.close(code=1000, reason="done")
    elapsed = time.monotonic() - started
    # The server's close frame came back through the tunnel: a clean closing handshake.
    assert ws.close_code == 1000
    assert ws.close_reason == "done"
    # ... and the proxy closed the connection after the backend did, without the client
    # having to give up waiting.
    assert elapsed < CLOSE_TIMEOUT_S / 2, f"close took {elapsed:.2f}s"
