"""End to end: a real ``isthmus gateway run --control-plane URL`` fed by the snapshot server.

The server (hub + Starlette app under uvicorn) runs in the test's event loop; the gateway is
a separate process serving a real HTTP backend. The test follows one proxy through its life:
it starts from the controller and serves; a route change pushed through the hub is applied
within about a second and reported applied; a snapshot that cannot run (a listener on a port
another socket holds) is reported refused with the error while the old one keeps serving;
and with the controller gone, a restarted proxy starts from its cache and serves the last
snapshot it applied.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from federation.snapshots.hub import SnapshotHub
from gateway.config.resources import Resources
from gateway.config.snapshot import decode
from tests.federation.snapshots.fed_snap_helpers import eventually, free_port, serve_hub
from tests.support.backends import HttpBackend
from tests.support.gateway import GatewayProcess, gateway_yaml, service_yaml, simple_route_yaml

PROXY = "ingress-e2e"
SETTINGS = """
apiVersion: isthmus.dev/v1alpha1
kind: ProxySettings
metadata: {name: proxy, namespace: default}
spec:
  drainTimeoutSeconds: 1
"""


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, HttpBackend]]:
    started = {name: HttpBackend(name).start() for name in ("one", "two")}
    yield started
    for backend in started.values():
        backend.stop()


def record(hub: SnapshotHub) -> dict[str, Any]:
    for proxy in hub.proxies_json()["proxies"]:
        if proxy["id"] == PROXY:
            return dict(proxy)
    return {}


async def backend_of(url: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(url + "/echo")
    assert r.status_code == 200, r.text
    return r.headers["x-backend"]


async def test_a_proxy_follows_the_control_plane_and_survives_its_absence(
    tmp_path: Path,
    load_yaml: Callable[..., Resources],
    backends: dict[str, HttpBackend],
) -> None:
    http_port, blocked_port = free_port(), free_port()
    url = f"http://127.0.0.1:{http_port}"
    cache = tmp_path / "cache" / "snapshot.json"

    def config(target: str, extra_listener: str = "") -> Resources:
        return load_yaml(
            gateway_yaml(http_port, listeners_extra=extra_listener),
            simple_route_yaml(target),
            service_yaml("one", 80, backends["one"].port),
            service_yaml("two", 80, backends["two"].port),
            SETTINGS,
        )

    hub = SnapshotHub("east")
    hub.update(config("one"), {})
    hub.flush()
    gateway = GatewayProcess(
        tmp_path / "gw",
        extra_args=["--proxy-id", PROXY, "--cache", str(cache)],
        control_plane="",  # set below, once the server has its URL
    )
    try:
        async with serve_hub(hub) as control_plane:
            gateway.control_plane = control_plane
            await asyncio.to_thread(gateway.start)
            assert await backend_of(url) == "one"
            first = await eventually(lambda: record(hub).get("applied_version"), what="applied")
            assert record(hub)["state"] == "in sync"
            assert decode(cache.read_bytes()).version == first

            # A route change: applied within about a second, reported, cached.
            changed_at = time.monotonic()
            hub.update(config("two"), {})
            second = await eventually(
                lambda: (v := record(hub).get("applied_version")) != first and v,
                what="the route change applied",
            )
            assert time.monotonic() - changed_at < 2.0
            assert await backend_of(url) == "two"
            assert record(hub)["state"] == "in sync"
            assert decode(cache.read_bytes()).version == second

            # A snapshot that fails only when applied: refused with the error, old one kept.
            with socket.socket() as blocker:
                blocker.bind(("127.0.0.1", blocked_port))
                blocker.listen(1)
                extra = f"  - {{name: extra, port: {blocked_port}, protocol: HTTP}}\n"
                hub.update(config("two", extra), {})
                refused = await eventually(
                    lambda: record(hub).get("refused_version"), what="the refusal"
                )
            state = record(hub)
            assert refused not in (first, second)
            assert state["state"] == "refused" and state["applied_version"] == second
            assert f"127.0.0.1:{blocked_port}" in state["error"]
            assert "Address already in use" in state["error"]
            assert await backend_of(url) == "two"
            dump = await asyncio.to_thread(gateway.config)
            assert dump["version"] == second
            assert decode(cache.read_bytes()).version == second
        await asyncio.to_thread(gateway.stop)

        # The controller is gone: a new proxy process starts from the cache.
        restarted = GatewayProcess(
            tmp_path / "gw2",
            extra_args=["--proxy-id", PROXY, "--cache", str(cache)],
            control_plane=control_plane,
        )
        gateway = restarted
        started = time.monotonic()
        await asyncio.to_thread(restarted.start)
        assert time.monotonic() - started < 10
        assert await backend_of(url) == "two"
        dump = await asyncio.to_thread(restarted.config)
        assert dump["version"] == second
        assert "control plane" in str(dump["source"])
    finally:
        await asyncio.to_thread(gateway.stop)
