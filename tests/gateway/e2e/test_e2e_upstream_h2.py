"""Upstream HTTP/2 (h2c) connection handling, seen from real h2 backends.

A backend that allows 100 concurrent streams gets 5 concurrent requests multiplexed on one
connection (which also shows that the backend's stream counter would catch a violation).
A backend that advertises SETTINGS_MAX_CONCURRENT_STREAMS = 1 never sees more than one open
stream on a connection: when its connection is busy the proxy opens another, and with 5
slow requests at once all of them must succeed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.gateway.e2e.helpers import (
    ConfigDir,
    H2Client,
    backend_service_yaml,
    http_route_yaml,
    open_socket,
    settings_yaml,
    start_gateway,
)
from tests.support.backends import H2cBackend
from tests.support.gateway import free_port


class Setup:
    def __init__(self, port: int, narrow: H2cBackend, wide: H2cBackend) -> None:
        self.port, self.narrow, self.wide = port, narrow, wide


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    narrow = H2cBackend("narrow", max_concurrent_streams=1).start()
    wide = H2cBackend("wide", max_concurrent_streams=100).start()
    cfg = ConfigDir(tmp_path_factory.mktemp("uph2") / "cfg")
    port = free_port()
    cfg.gateway(port)
    for b in (narrow, wide):
        cfg.write(
            f"svc-{b.name}.yaml",
            backend_service_yaml(b.name, b.port, app_protocol="kubernetes.io/h2c"),
        )
        cfg.write(
            f"route-{b.name}.yaml",
            http_route_yaml(
                b.name,
                f"  - backendRefs: [{{name: {b.name}, port: 80}}]\n",
                hostnames=[f"{b.name}.test"],
            ),
        )
    cfg.write("settings.yaml", settings_yaml(drainTimeoutSeconds=2))
    gw = start_gateway(cfg)
    yield Setup(port, narrow, wide)
    gw.stop()
    narrow.stop()
    wide.stop()


def _concurrent_slow(port: int, host: str, n: int = 5) -> list[tuple[int, bytes]]:
    client = H2Client(open_socket(port))
    try:
        sids = [client.request("GET", f"/slow?ms=300&i={i}", host) for i in range(n)]
        return [client.response(sid, timeout_s=4) for sid in sids]
    finally:
        client.close()


def test_streams_are_multiplexed_when_allowed(setup: Setup) -> None:
    connections_before = setup.wide.connections
    results = _concurrent_slow(setup.port, "wide.test")
    assert [status for status, _ in results] == [200] * 5
    # Several streams open at once on one connection: the backend's counter sees them.
    assert setup.wide.max_concurrent_seen >= 2
    assert setup.wide.connections - connections_before <= 1


def test_busy_connection_makes_the_proxy_open_another(setup: Setup) -> None:
    assert _concurrent_slow(setup.port, "narrow.test", n=1)[0][0] == 200  # warm the pool
    connections_before = setup.narrow.connections
    results = _concurrent_slow(setup.port, "narrow.test", n=2)
    assert [status for status, _ in results] == [200] * 2
    assert setup.narrow.max_concurrent_seen == 1
    assert setup.narrow.connections == connections_before + 1


def test_peer_max_concurrent_streams_is_honoured(setup: Setup) -> None:
    setup.narrow.clear()
    results = _concurrent_slow(setup.port, "narrow.test")
    assert [status for status, _ in results] == [200] * 5
    assert sorted(json.loads(body)["query"] for _, body in results) == [
        f"ms=300&i={i}" for i in range(5)
    ]
    assert len(setup.narrow.requests) == 5
    assert setup.narrow.max_concurrent_seen == 1
