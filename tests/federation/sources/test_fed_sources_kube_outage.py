"""The Kubernetes source through failures: the API server going away and coming back (backoff,
state kept, convergence without a relist), a CRD that is not installed (synced anyway, picked up
once it appears), paged lists, and objects the proxy cannot use (reported, skipped)."""

from __future__ import annotations

import asyncio
import dataclasses

from federation.sources.kube import KubeSource
from federation.sources.store import ObjectStore
from tests.federation.sources.conftest import (
    FAST,
    Forwarder,
    Running,
    api_for,
    eventually,
    service,
)
from tests.support.kube_api import KubeApiDouble
from tests.support.kube_resources import ResourceType

SERVICES = "/api/v1/services"


def _lists(kube: KubeApiDouble, path: str = SERVICES) -> int:
    return sum(1 for r in kube.requests if r.path == path and not r.watch and r.method == "GET")


async def test_an_api_outage_backs_off_keeps_the_state_and_converges(
    kube: KubeApiDouble, forwarder: Forwarder
) -> None:
    kube.create(service("web"))
    kube.create(service("db"))
    store = ObjectStore()
    run = Running(store, KubeSource(store, api_for(kube, forwarder.url), settings=FAST))
    try:
        run.source.start()
        await asyncio.wait_for(store.synced.wait(), 10)
        await asyncio.to_thread(kube.wait_for_watches, 1, "v1", "Service")
        mark = len(run.changes)
        services = next(w for w in run.source._watchers if w.kind.kind == "Service")

        await asyncio.to_thread(kube.stop)  # the API server goes away
        await eventually(lambda: services.status.errors >= 3)
        await asyncio.sleep(1.0)  # a second of outage
        # Without backoff a watcher would retry thousands of times a second; with it (50 ms
        # doubling to 400 ms, jittered) a handful.
        assert services.status.errors <= 12
        assert services.status.state == "backoff"
        assert store.get("Service", "shop", "web") is not None  # nothing forgotten
        assert run.changes_since(mark) == []

        kube.create(service("api"))  # written while the server is down (to its store)
        kube.delete("v1", "Service", "db", "shop")
        await asyncio.to_thread(kube.start)  # back (on a new port, behind the forwarder)
        await run.until(lambda: store.get("Service", "shop", "api") is not None)
        await run.until(lambda: store.get("Service", "shop", "db") is None)

        assert {(c.type, str(c.key)) for c in run.changes_since(mark)} == {
            ("ADDED", "Service shop/api"),
            ("DELETED", "Service shop/db"),
        }
        assert _lists(kube) == 1  # resumed from its resourceVersion: no relist
        await eventually(lambda: services.status.state == "watching")
    finally:
        await run.source.stop()


async def test_a_missing_crd_does_not_block_synced_and_is_picked_up_later(
    kube: KubeApiDouble, running: Running
) -> None:
    running.source.start()
    await asyncio.wait_for(running.store.synced.wait(), 10)
    statuses = {s.kind: s for s in running.source.status()}
    assert statuses["GatewayClass"].state == "missing"

    kube.register_resource(
        ResourceType("gateway.networking.k8s.io", "v1", "gatewayclasses", "GatewayClass",
                     namespaced=False)
    )  # fmt: skip
    kube.create(
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
         "metadata": {"name": "isthmus"}, "spec": {"controllerName": "isthmus.dev/gateway"}}
    )  # fmt: skip
    await running.until(lambda: running.store.get("GatewayClass", "", "isthmus") is not None)
    await eventually(lambda: statuses["GatewayClass"].state == "watching")
    assert statuses["GatewayClass"].api_version == "gateway.networking.k8s.io/v1"
    assert [o.name for o in running.store.resources().objects if o.kind == "GatewayClass"] == [
        "isthmus"
    ]


async def test_lists_are_paged(kube: KubeApiDouble) -> None:
    for i in range(7):
        kube.create(service(f"s{i}"))
    store = ObjectStore()
    settings = dataclasses.replace(FAST, page_size=3)
    source = KubeSource(store, api_for(kube), settings=settings)
    try:
        source.start()
        await asyncio.wait_for(store.synced.wait(), 10)
    finally:
        await source.stop()
    pages = [r.query for r in kube.requests if r.path == SERVICES and not r.watch]
    assert len(pages) == 3
    assert "continue" not in pages[0] and "continue" in pages[1]
    assert len(store.items("Service")) == 7


async def test_objects_the_proxy_cannot_use_are_reported_and_skipped(
    kube: KubeApiDouble, running: Running
) -> None:
    kube.create(service("web"))
    kube.create(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "legacy", "namespace": "shop"},
         "spec": {"type": "ExternalName", "externalName": "legacy.example.com"}}
    )  # fmt: skip
    running.source.start()
    await asyncio.wait_for(running.store.synced.wait(), 10)

    names = [o.name for o in running.store.resources().objects if o.kind == "Service"]
    assert names == ["web"]
    problems = running.store.problems()
    assert len(problems) >= 1
    assert all(p.obj == "Service shop/legacy" for p in problems)
    assert problems[0].file.startswith("kubernetes http://127.0.0.1:")
    # Still in the raw store (exports and status can see it), and the source carries on.
    assert running.store.get("Service", "shop", "legacy") is not None
    kube.create(service("api"))
    await running.until(lambda: running.store.get("Service", "shop", "api") is not None)
