"""The snapshot server over real HTTP: long-poll, debounce, status reports, ``/v1/proxies``.

The app runs under uvicorn on a loopback port in the test's event loop; requests are made
with httpx. Time bounds are generous where they assert "soon" and tight only where they
assert "not before".
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Callable

import httpx
import msgspec
import pytest

from federation.snapshots.bodies import SLICE_BYTES
from federation.snapshots.hub import SnapshotHub
from federation.snapshots.status import format_status
from gateway.config.delta import Indexed, apply, decode_delta
from gateway.config.resources import Resources
from gateway.config.snapshot import decode
from tests.federation.snapshots.fed_snap_helpers import imported, keyed, serve_hub

SERVICE = """
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  ports: [{{name: http, port: 80}}]
"""
GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  gatewayClassName: isthmus
  listeners: [{{name: http, port: 8080, protocol: HTTP}}]
"""


@pytest.fixture
def services(load_yaml: Callable[..., Resources]) -> Callable[..., Resources]:
    def make(*names: str) -> Resources:
        return load_yaml(*(SERVICE.format(name=n) for n in names))

    return make


@pytest.fixture
async def hub() -> AsyncIterator[SnapshotHub]:
    hub = SnapshotHub("east", quiet_s=0.05, max_delay_s=0.5)
    yield hub
    await hub.aclose()


@pytest.fixture
async def server(hub: SnapshotHub) -> AsyncIterator[tuple[SnapshotHub, httpx.AsyncClient]]:
    async with serve_hub(hub) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield hub, client


def snapshot_url(proxy: str, version: str = "", wait: str = "0s") -> str:
    return f"/v1/snapshots/{proxy}?version={version}&wait={wait}"


async def test_no_snapshot_before_the_first_update_is_503(
    server: tuple[SnapshotHub, httpx.AsyncClient],
) -> None:
    _, client = server
    r = await client.get(snapshot_url("p1", wait="50ms"))
    assert r.status_code == 503
    assert "no snapshot" in r.json()["error"]


async def test_a_different_version_is_answered_at_once(
    server: tuple[SnapshotHub, httpx.AsyncClient], services: Callable[..., Resources]
) -> None:
    hub, client = server
    hub.update(services("a"), {})
    hub.flush()
    started = time.monotonic()
    r = await client.get(snapshot_url("p1", version="stale", wait="20s"))
    assert time.monotonic() - started < 2.0
    assert r.status_code == 200
    snap = decode(r.content)
    assert r.headers["x-isthmus-version"] == snap.version
    assert [c.name for c in snap.clusters] == ["default/a:80"]


async def test_the_same_version_waits_then_answers_304(
    server: tuple[SnapshotHub, httpx.AsyncClient], services: Callable[..., Resources]
) -> None:
    hub, client = server
    hub.update(services("a"), {})
    hub.flush()
    version = (await client.get(snapshot_url("p1"))).headers["x-isthmus-version"]
    started = time.monotonic()
    r = await client.get(snapshot_url("p1", version=version, wait="400ms"))
    assert r.status_code == 304
    assert time.monotonic() - started >= 0.4


async def test_a_waiting_poll_wakes_on_a_change_and_not_on_a_no_op(
    server: tuple[SnapshotHub, httpx.AsyncClient], services: Callable[..., Resources]
) -> None:
    hub, client = server
    hub.update(services("a"), {})
    hub.flush()
    version = (await client.get(snapshot_url("p1"))).headers["x-isthmus-version"]

    # An update that compiles to the same snapshot does not answer the poll.
    same = asyncio.create_task(client.get(snapshot_url("p1", version=version, wait="600ms")))
    await asyncio.sleep(0.1)
    hub.update(services("a"), {})
    assert (await same).status_code == 304

    poll = asyncio.create_task(client.get(snapshot_url("p1", version=version, wait="20s")))
    await asyncio.sleep(0.2)
    assert not poll.done()
    changed_at = time.monotonic()
    hub.update(services("a"), keyed(imported("west", "b", 80)))
    r = await poll
    assert time.monotonic() - changed_at < 1.5
    assert r.status_code == 200
    snap = decode(r.content)
    assert snap.version != version
    assert "default/b.clusterset:80" in snap.cluster_map()
    assert hub.stats.pushes == 1
    assert hub.stats.last_push_latency_s is not None
    assert 0.05 <= hub.stats.last_push_latency_s < 1.5  # at least the debounce's quiet time


async def test_a_burst_of_updates_is_one_or_two_recompiles(
    server: tuple[SnapshotHub, httpx.AsyncClient], services: Callable[..., Resources]
) -> None:
    hub, client = server
    bursts = [services(f"s{i}") for i in range(50)]
    for resources in bursts:
        hub.update(resources, {})
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.3)
    assert 1 <= hub.stats.recompiles <= 2
    # The last update is what is served.
    snap = decode((await client.get(snapshot_url("p1"))).content)
    assert [c.name for c in snap.clusters] == ["default/s49:80"]


async def test_a_burst_that_never_pauses_still_recompiles_within_the_maximum_delay(
    hub: SnapshotHub, services: Callable[..., Resources]
) -> None:
    resources = [services("a"), services("b")]
    started = time.monotonic()
    first_at: float | None = None
    while time.monotonic() - started < 1.2:
        hub.update(resources[int(time.monotonic() * 50) % 2], {})
        if first_at is None and hub.stats.recompiles:
            first_at = time.monotonic() - started
        await asyncio.sleep(0.01)
    assert first_at is not None and first_at < 0.5 + 0.2  # max_delay_s is 0.5
    assert 2 <= hub.stats.recompiles <= 4


async def test_status_reports_show_in_proxies(
    server: tuple[SnapshotHub, httpx.AsyncClient], services: Callable[..., Resources]
) -> None:
    hub, client = server
    hub.update(services("a"), {})
    hub.flush()
    v1 = (await client.get(snapshot_url("p1") + "&role=ingress&workload=gw")).headers[
        "x-isthmus-version"
    ]
    await client.get(snapshot_url("p2"))
    r = await client.post("/v1/snapshots/p1/status", json={"version": v1, "applied": True})
    assert r.status_code == 204
    proxies = {p["id"]: p for p in (await client.get("/v1/proxies")).json()["proxies"]}
    assert proxies["p1"]["state"] == "in sync" and proxies["p1"]["in_sync"] is True
    assert proxies["p1"]["workload"] == "gw" and proxies["p1"]["applied_version"] == v1
    assert proxies["p2"]["state"] == "pending" and proxies["p2"]["served_version"] == v1

    hub.update(services("a", "b"), {})
    hub.flush()
    v2 = (await client.get(snapshot_url("p1", version=v1))).headers["x-isthmus-version"]
    error = "worker 0: [Errno 98] address already in use"
    await client.post(
        "/v1/snapshots/p1/status", json={"version": v2, "applied": False, "error": error}
    )
    answer = (await client.get("/v1/proxies")).json()
    p1 = next(p for p in answer["proxies"] if p["id"] == "p1")
    assert (p1["state"], p1["version"], p1["applied_version"]) == ("refused", v2, v1)
    assert p1["error"] == error and p1["in_sync"] is False
    assert answer["push"]["pushes"] == 1

    table = format_status(answer)
    line = next(x for x in table.splitlines() if x.startswith("p1"))
    assert v2 in line and v1 in line and "refused" in line and "address already in use" in line
    assert "0/2 proxies in sync" in table


async def test_bad_requests_get_clear_errors(
    server: tuple[SnapshotHub, httpx.AsyncClient],
) -> None:
    _, client = server
    r = await client.get("/v1/snapshots/p1?wait=forever")
    assert r.status_code == 400 and "wait='forever'" in r.json()["error"]
    r = await client.get("/v1/snapshots/p1?wait=1h")
    assert r.status_code == 400
    r = await client.get("/v1/snapshots/-bad?wait=0s")
    assert r.status_code == 400 and "proxy id" in r.json()["error"]
    r = await client.post("/v1/snapshots/p1/status", content=b'{"applied": "yes"}')
    assert r.status_code == 400 and "status body" in r.json()["error"]
    r = await client.post("/v1/snapshots/p1/status", content=b"not json")
    assert r.status_code == 400
    r = await client.get("/v1/snapshots/p1?wait=0s&role=sidecar&inbound=0.0.0.0:x")
    assert r.status_code == 400 and "inbound='0.0.0.0:x': expected HOST:PORT" in r.json()["error"]
    r = await client.get("/v1/snapshots/p1?wait=0s&label=app")
    assert r.status_code == 400 and "expected key=value" in r.json()["error"]
    r = await client.get("/v1/snapshots/p1?wait=0s")  # the server still answers
    assert r.status_code in (200, 304, 503)


async def test_a_configuration_that_stops_compiling_keeps_the_last_good_snapshot(
    server: tuple[SnapshotHub, httpx.AsyncClient],
    load_yaml: Callable[..., Resources],
) -> None:
    hub, client = server
    hub.update(load_yaml(GATEWAY.format(name="gw")), {})
    hub.flush()
    good = (await client.get(snapshot_url("p1"))).headers["x-isthmus-version"]
    # Two Gateways with a listener on the same port and hostname: a compile error.
    hub.update(load_yaml(GATEWAY.format(name="gw"), GATEWAY.format(name="gw2")), {})
    hub.flush()
    r = await client.get(snapshot_url("p1", version=good, wait="100ms"))
    assert r.status_code == 304
    (p1,) = (await client.get("/v1/proxies")).json()["proxies"]
    assert p1["version"] == good
    assert "8080" in p1["compile_error"]
    assert hub.stats.compile_errors == 1


async def test_closing_the_hub_answers_waiting_polls(
    hub: SnapshotHub, services: Callable[..., Resources]
) -> None:
    async with serve_hub(hub) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        hub.update(services("a"), {})
        hub.flush()
        version = (await client.get(snapshot_url("p1"))).headers["x-isthmus-version"]
        poll = asyncio.create_task(client.get(snapshot_url("p1", version=version, wait="60s")))
        await asyncio.sleep(0.1)
        await hub.aclose()
        r = await asyncio.wait_for(poll, 5)
        assert r.status_code == 304


async def test_a_proxy_in_step_gets_only_what_changed(
    server: tuple[SnapshotHub, httpx.AsyncClient], services: Callable[..., Resources]
) -> None:
    hub, client = server
    hub.update(services(*(f"s{i}" for i in range(20))), {})
    hub.flush()
    first = await client.get(snapshot_url("p1") + "&delta=1")
    assert "x-isthmus-delta-base" not in first.headers  # nothing held yet: the whole snapshot
    held = Indexed(decode(first.content))

    hub.update(services(*(f"s{i}" for i in range(1, 20)), "t"), keyed(imported("west", "b", 80)))
    hub.flush()
    r = await client.get(snapshot_url("p1", version=held.version) + "&delta=1")
    assert r.status_code == 200
    assert r.headers["x-isthmus-delta-base"] == held.version
    delta = decode_delta(r.content)
    assert sorted(c.name for c in delta.clusters) == ["default/b.clusterset:80", "default/t:80"]
    assert delta.removed == ("default/s0:80",)
    rebuilt = apply(held, delta)
    assert rebuilt.version == r.headers["x-isthmus-version"]

    # The same move for a second proxy reuses the encoded delta; without delta=1, or from a
    # version the controller no longer knows, the answer is the whole snapshot.
    again = await client.get(snapshot_url("p2", version=held.version) + "&delta=1")
    assert again.content == r.content and hub.stats.deltas == 1
    whole = await client.get(snapshot_url("p3", version=held.version))
    assert "x-isthmus-delta-base" not in whole.headers
    # The same content (cluster order carries no meaning: a delta appends new clusters).
    whole_snapshot = decode(whole.content)
    assert whole_snapshot.cluster_map() == rebuilt.snapshot.cluster_map()
    assert len(whole_snapshot.clusters) == len(rebuilt.snapshot.clusters)
    assert msgspec.structs.replace(whole_snapshot, clusters=()) == msgspec.structs.replace(
        rebuilt.snapshot, clusters=()
    )
    unknown = await client.get(snapshot_url("p4", version="0123456789abcdef") + "&delta=1")
    assert "x-isthmus-delta-base" not in unknown.headers
    assert decode(unknown.content).version == rebuilt.version


async def test_large_snapshots_are_gzipped_for_clients_that_accept_it(
    server: tuple[SnapshotHub, httpx.AsyncClient], services: Callable[..., Resources]
) -> None:
    hub, client = server
    hub.update(services(*(f"service-{i:04d}" for i in range(700))), {})
    hub.flush()
    url = snapshot_url("p1")
    plain = await client.get(url, headers={"accept-encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    # Larger than one slice: sent in slices, with its length announced.
    assert int(plain.headers["content-length"]) == len(plain.content) > SLICE_BYTES
    snapshot = decode(plain.content)
    assert len(snapshot.clusters) == 700

    async with client.stream("GET", url, headers={"accept-encoding": "gzip"}) as r:
        assert r.headers["content-encoding"] == "gzip"
        wire = b"".join([chunk async for chunk in r.aiter_raw()])
    assert len(wire) * 10 < len(plain.content)
    assert decode(gzip.decompress(wire)) == snapshot
    refused = await client.get(url, headers={"accept-encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers
