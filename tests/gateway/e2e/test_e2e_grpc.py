"""grpcio clients through the gateway to grpcio servers (h2c upstream, ``appProtocol: grpc``).

Over the plain listener (h2c, prior knowledge) and over an HTTPS listener (TLS, ALPN h2):
unary, server streaming and bidi calls (bidi in lock step, so messages must stream through
the proxy one by one), a deadline that expires (DEADLINE_EXCEEDED at the client, and the
backend sees the call cancelled), and a non-OK status whose details and trailing metadata
reach the client. A GRPCRoute sends calls to one of two backends by service and method.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import grpc
import pytest
import trustme

from tests.gateway.e2e.helpers import (
    ConfigDir,
    backend_service_yaml,
    http_route_yaml,
    https_listener,
    settings_yaml,
    start_gateway,
    tls_secret_yaml,
    wait_until,
)
from tests.support.backends import GRPC_OTHER_SERVICE, GRPC_SERVICE, GrpcBackend
from tests.support.gateway import free_port

HOST = "grpc.example.test"


class Setup:
    def __init__(
        self, http_port: int, tls_port: int, a: GrpcBackend, b: GrpcBackend, ca: trustme.CA
    ) -> None:
        self.http_port, self.tls_port, self.a, self.b, self.ca = http_port, tls_port, a, b, ca


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[Setup]:
    a = GrpcBackend("grpc-a").start()
    b = GrpcBackend("grpc-b").start()
    cfg = ConfigDir(tmp_path_factory.mktemp("grpc") / "cfg")
    http_port, tls_port = free_port(), free_port()
    cfg.gateway(http_port, https_listener("https", tls_port, "cert", HOST))
    cfg.write("secret.yaml", tls_secret_yaml("cert", ca.issue_cert(HOST)))
    cfg.write("a.yaml", backend_service_yaml("grpc-a", a.port, app_protocol="grpc"))
    cfg.write("b.yaml", backend_service_yaml("grpc-b", b.port, app_protocol="kubernetes.io/h2c"))
    rules = (
        f"  - matches: [{{method: {{service: {GRPC_SERVICE}, method: ServerStream}}}},\n"
        f"              {{method: {{service: {GRPC_OTHER_SERVICE}}}}}]\n"
        "    backendRefs: [{name: grpc-b, port: 80}]\n"
        "  - backendRefs: [{name: grpc-a, port: 80}]\n"
    )
    cfg.write("route.yaml", http_route_yaml("grpc", rules, kind="GRPCRoute"))
    cfg.write("settings.yaml", settings_yaml(drainTimeoutSeconds=2))
    gw = start_gateway(cfg)
    yield Setup(http_port, tls_port, a, b, ca)
    gw.stop()
    a.stop()
    b.stop()


@pytest.fixture(params=["h2c", "tls"])
def channel(request: pytest.FixtureRequest, setup: Setup) -> Iterator[grpc.Channel]:
    if request.param == "h2c":
        ch = grpc.insecure_channel(f"127.0.0.1:{setup.http_port}")
    else:
        creds = grpc.ssl_channel_credentials(root_certificates=setup.ca.cert_pem.bytes())
        ch = grpc.secure_channel(
            f"127.0.0.1:{setup.tls_port}",
            creds,
            options=[("grpc.ssl_target_name_override", HOST), ("grpc.default_authority", HOST)],
        )
    yield ch
    ch.close()


def _backend_of(call: grpc.Call) -> str:
    return dict(call.initial_metadata())["x-backend"]


def test_unary(channel: grpc.Channel) -> None:
    reply, call = channel.unary_unary(f"/{GRPC_SERVICE}/Unary").with_call(
        b"hello", timeout=10, metadata=(("x-request-tag", "u1"),)
    )
    assert reply == b"hello"
    assert call.code() == grpc.StatusCode.OK
    assert _backend_of(call) == "grpc-a"


def test_unary_large_message(channel: grpc.Channel) -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB, more than any single flow-control window
    reply = channel.unary_unary(f"/{GRPC_SERVICE}/Unary")(payload, timeout=20)
    assert reply == payload


def test_server_streaming(channel: grpc.Channel) -> None:
    call = channel.unary_stream(f"/{GRPC_SERVICE}/ServerStream")(b"20:item", timeout=10)
    replies = list(call)
    assert replies == [f"item-{i}".encode() for i in range(20)]
    assert call.code() == grpc.StatusCode.OK
    assert _backend_of(call) == "grpc-b"  # the GRPCRoute method match


def test_bidi_lock_step(channel: grpc.Channel) -> None:
    outgoing: queue.Queue[bytes | None] = queue.Queue()

    def requests() -> Iterator[bytes]:
        while (item := outgoing.get(timeout=10)) is not None:
            yield item

    call = channel.stream_stream(f"/{GRPC_SERVICE}/Bidi")(requests(), timeout=20)
    for i in range(10):
        message = f"m{i}".encode()
        outgoing.put(message)
        # The next message is sent only after this echo came back through the proxy.
        assert next(call) == b"echo:" + message
    outgoing.put(None)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK


def test_deadline_exceeded(channel: grpc.Channel, setup: Setup) -> None:
    before = setup.a.cancelled_sleeps
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(f"/{GRPC_SERVICE}/Sleep")(b"3000", timeout=0.3)
    elapsed = time.monotonic() - started
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 2.0
    # The backend learns that the call is over (cancel or its own grpc-timeout) and stops.
    wait_until(lambda: setup.a.cancelled_sleeps > before, timeout_s=5, what="backend cancel")


def test_error_status_with_trailing_metadata(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(f"/{GRPC_SERVICE}/Fail").with_call(b"", timeout=10)
    err = info.value
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details() == "asked to fail"
    assert dict(err.trailing_metadata())["x-fail-reason"] == "requested"


def test_unimplemented_method_status_passes_through(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(f"/{GRPC_SERVICE}/NoSuchMethod")(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_grpcroute_service_match(channel: grpc.Channel, setup: Setup) -> None:
    reply, call = channel.unary_unary(f"/{GRPC_OTHER_SERVICE}/Unary").with_call(b"x", timeout=10)
    assert reply == b"other:x"
    assert _backend_of(call) == "grpc-b"
    setup.b.wait_for(lambda s: s.path == f"/{GRPC_OTHER_SERVICE}/Unary")
