"""The Kubernetes source against the API double, through the real ``kubernetes`` client:
initial list and ``synced``, watch events into the store, resume after a dropped watch, bookmarks
and a clean stop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from federation.sources.kinds import SOURCE_KINDS
from federation.sources.kube import KubeSource
from federation.sources.kube_client import api_client
from federation.sources.store import ObjectStore
from gateway.config.kinds import EndpointSlice, Service
from tests.federation.sources.conftest import (
    FAST,
    Running,
    endpoint_slice,
    eventually,
    service,
    service_export,
)
from tests.support.kube_api import KubeApiDouble


def _lists(kube: KubeApiDouble, path: str) -> int:
    return sum(1 for r in kube.requests if r.path == path and not r.watch and r.method == "GET")


def _watches(kube: KubeApiDouble, path: str) -> list[dict[str, str]]:
    return [r.query for r in kube.requests if r.path == path and r.watch]


async def test_initial_list_fills_the_store_and_sets_synced(
    kube: KubeApiDouble, running: Running
) -> None:
    kube.create(service("web"))
    kube.create(endpoint_slice("web", ("10.0.0.1", "10.0.0.2")))
    kube.create(service_export("web"))
    kube.create(
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
         "spec": {"serviceAccountName": "web-sa", "nodeName": "n1",
                  "containers": [{"name": "c", "image": "x"}]}}
    )  # fmt: skip
    running.source.start()
    await asyncio.wait_for(running.store.synced.wait(), 10)

    store = running.store
    assert store.get("Service", "shop", "web") is not None
    assert store.get("ServiceExport", "shop", "web") is not None
    pod = store.get("Pod", "shop", "web-1")
    assert pod is not None
    assert pod["spec"] == {"serviceAccountName": "web-sa", "nodeName": "n1"}  # trimmed
    resources = store.resources()
    assert [s.name for s in resources.of_kind(Service)] == ["web"]
    # The server's generateName and topology hints are stripped; the slice validates.
    (eps,) = resources.of_kind(EndpointSlice)
    assert [e.addresses[0] for e in eps.endpoints] == ["10.0.0.1", "10.0.0.2"]
    assert store.problems() == ()
    # Every kind did its list once; kinds the double does not serve count as synced.
    states = {s.kind: s for s in running.source.status()}
    assert set(states) == {k.kind for k in SOURCE_KINDS}
    assert states["GatewayClass"].state == "missing"
    assert states["Node"].state == "missing"
    assert all(s.synced for s in states.values())
    assert states["Service"].lists == 1
    assert store.pending() == []


async def test_watch_events_reach_the_store(kube: KubeApiDouble, running: Running) -> None:
    running.source.start()
    await asyncio.wait_for(running.store.synced.wait(), 10)
    await asyncio.to_thread(kube.wait_for_watches, 1, "v1", "Service")
    store = running.store
    mark = len(running.changes)

    kube.create(service("web"))
    await running.until(lambda: store.get("Service", "shop", "web") is not None)
    updated = service("web", ports=(80, 443))
    kube.update(updated)
    await running.until(lambda: len(store.get("Service", "shop", "web")["spec"]["ports"]) == 2)  # type: ignore[index]
    kube.delete("v1", "Service", "web", "shop")
    await running.until(lambda: store.get("Service", "shop", "web") is None)

    assert [c.type for c in running.changes_since(mark)] == ["ADDED", "MODIFIED", "DELETED"]
    now = str(kube.resource_version)
    await eventually(lambda: running.source.resource_version("Service") == now)


async def test_a_dropped_watch_resumes_from_the_last_resource_version(
    kube: KubeApiDouble, running: Running
) -> None:
    kube.create(service("web"))
    running.source.start()
    await asyncio.wait_for(running.store.synced.wait(), 10)
    await asyncio.to_thread(kube.wait_for_watches, 1, "v1", "Service")
    last = running.source.resource_version("Service")
    before = len(_watches(kube, "/api/v1/services"))

    kube.close_watches()  # the server ends every stream, as at its request timeout
    kube.create(service("api"))  # happens while the watch is down or just back
    await running.until(lambda: running.store.get("Service", "shop", "api") is not None)

    assert _lists(kube, "/api/v1/services") == 1  # no relist
    resumed = _watches(kube, "/api/v1/services")[before]
    assert resumed["resourceVersion"] == last
    assert resumed["allowWatchBookmarks"].lower() == "true"
    assert running.store.get("Service", "shop", "web") is not None


async def test_bookmarks_advance_the_resource_version(
    kube: KubeApiDouble, running: Running
) -> None:
    running.source.start()
    await asyncio.wait_for(running.store.synced.wait(), 10)
    await asyncio.to_thread(kube.wait_for_watches, 1, "v1", "Service")
    listed = running.source.resource_version("Service")
    # Changes to other kinds move the global resourceVersion; Services see none of them.
    for i in range(3):
        kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}})
    now = str(kube.resource_version)
    assert listed != now
    before = len(_watches(kube, "/api/v1/services"))

    assert kube.send_bookmark() > 0
    services = next(w for w in running.source._watchers if w.kind.kind == "Service")
    await eventually(lambda: running.source.resource_version("Service") == now)
    assert services.status.bookmarks >= 1

    kube.close_watches()
    await eventually(lambda: len(_watches(kube, "/api/v1/services")) > before)
    assert _watches(kube, "/api/v1/services")[before]["resourceVersion"] == now
    assert _lists(kube, "/api/v1/services") == 1


async def test_stop_is_prompt_while_watches_are_open(kube: KubeApiDouble, running: Running) -> None:
    running.source.start()
    await asyncio.wait_for(running.store.synced.wait(), 10)
    await asyncio.to_thread(kube.wait_for_watches, 10)
    started = time.monotonic()
    await running.source.stop()
    assert time.monotonic() - started < 2.0
    assert all(s.state == "stopped" for s in running.source.status())
    await asyncio.to_thread(kube.wait_for_watches, 0, at_most=True)


async def test_a_kubeconfig_file_and_run_until_cancelled(
    kube: KubeApiDouble, tmp_path: Path
) -> None:
    kube.create(service("web"))
    path = kube.write_kubeconfig(tmp_path / "kubeconfig")
    store = ObjectStore()
    source = KubeSource(store, api_client(str(path)), settings=FAST)
    assert source.calls.api.configuration.connection_pool_maxsize == 32
    task = asyncio.create_task(source.run())
    await asyncio.wait_for(store.synced.wait(), 10)
    assert store.get("Service", "shop", "web") is not None

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(s.state == "stopped" for s in source.status())
    await asyncio.to_thread(kube.wait_for_watches, 0, at_most=True)
