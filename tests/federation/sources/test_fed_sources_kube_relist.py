"""410 Gone: the Kubernetes source relists and diffs the list against the store, so that a relist
deletes nothing that still exists, rewrites nothing unchanged, and deletes what really went away
while the watch was down."""

from __future__ import annotations

import asyncio

from federation.sources.kube import KubeSource
from federation.sources.store import ObjectStore
from tests.federation.sources.conftest import (
    FAST,
    Forwarder,
    Running,
    api_for,
    endpoint_slice,
    eventually,
    service,
    service_export,
)
from tests.support.kube_api import KubeApiDouble

SERVICES = "/api/v1/services"


def _lists(kube: KubeApiDouble, path: str = SERVICES) -> int:
    return sum(1 for r in kube.requests if r.path == path and not r.watch and r.method == "GET")


def _fill(kube: KubeApiDouble) -> None:
    for name in ("web", "api", "db"):
        kube.create(service(name))
        kube.create(endpoint_slice(name, ("10.0.0.1",)))
        kube.create(service_export(name))


async def _synced_and_watching(kube: KubeApiDouble, run: Running) -> None:
    run.source.start()
    await asyncio.wait_for(run.store.synced.wait(), 10)
    await asyncio.to_thread(kube.wait_for_watches, 1, "v1", "Service")
    await asyncio.to_thread(
        kube.wait_for_watches, 1, "multicluster.x-k8s.io/v1alpha1", "ServiceExport"
    )


def _all_relisted(run: Running) -> bool:
    """Every kind the double serves has relisted and watches again."""
    served = [s for s in run.source.status() if s.state != "missing"]
    return all(s.relists >= 1 and s.lists >= 2 and s.state == "watching" for s in served)


def _services_watcher_state(run: Running) -> str:
    return next(s.state for s in run.source.status() if s.kind == "Service")


async def test_an_in_stream_410_relist_changes_nothing_that_still_exists(
    kube: KubeApiDouble, running: Running
) -> None:
    _fill(kube)
    await _synced_and_watching(kube, running)
    size, mark = len(running.store), len(running.changes)

    kube.expire_history()
    assert kube.expire_watches() > 0  # ERROR {"code": 410} in every stream
    await eventually(lambda: _all_relisted(running))

    assert running.changes_since(mark) == []  # no DELETED, no MODIFIED churn
    assert running.store.counts["DELETED"] == 0
    assert len(running.store) == size
    assert _lists(kube) == 2
    statuses = {s.kind: s for s in running.source.status()}
    assert statuses["Service"].relists == 1
    # The store still follows the cluster after the relist.
    kube.create(service("late"))
    await running.until(lambda: running.store.get("Service", "shop", "late") is not None)


async def test_an_http_410_relist_changes_nothing_that_still_exists(
    kube: KubeApiDouble, running: Running
) -> None:
    kube.settings.expired_watch_as_http_410 = True
    _fill(kube)
    await _synced_and_watching(kube, running)
    mark = len(running.changes)

    # A change the Service watch does not see, then compaction: its resourceVersion is too old.
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unrelated"}})
    kube.expire_history()
    kube.close_watches()  # the resumed watches get HTTP 410
    await eventually(lambda: _all_relisted(running))
    expired = [r for r in kube.requests if r.path == SERVICES and r.watch and r.status == 410]

    assert len(expired) == 1
    assert _lists(kube) == 2
    assert running.changes_since(mark) == []
    assert running.store.counts["DELETED"] == 0


async def test_a_relist_after_a_partition_deletes_only_what_really_went_away(
    kube: KubeApiDouble, forwarder: Forwarder
) -> None:
    _fill(kube)
    store = ObjectStore()
    run = Running(store, KubeSource(store, api_for(kube, forwarder.url), settings=FAST))
    try:
        await _synced_and_watching(kube, run)
        mark = len(run.changes)

        forwarder.down()  # the network is gone: the watches break and cannot come back
        await eventually(lambda: _services_watcher_state(run) == "backoff")
        kube.delete("v1", "Service", "db", "shop")
        kube.delete("multicluster.x-k8s.io/v1alpha1", "ServiceExport", "db", "shop")
        kube.update(service("api", ports=(80, 8443)))
        kube.create(service("new"))
        kube.expire_history()  # ... and the watch history of all that is gone too
        forwarder.up()

        await run.until(lambda: store.get("Service", "shop", "new") is not None)
        await run.until(lambda: store.get("ServiceExport", "shop", "db") is None)
        changes = {(c.type, str(c.key)) for c in run.changes_since(mark)}
        assert changes == {
            ("DELETED", "Service shop/db"),
            ("DELETED", "ServiceExport shop/db"),
            ("MODIFIED", "Service shop/api"),
            ("ADDED", "Service shop/new"),
        }
        assert store.counts["DELETED"] == 2
        assert store.get("Service", "shop", "web") is not None
        assert store.get("EndpointSlice", "shop", "db-a") is not None  # still in the cluster
        assert _lists(kube) == 2
    finally:
        await run.source.stop()
