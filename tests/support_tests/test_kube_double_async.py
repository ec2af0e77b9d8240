"""The API double under the controller's likely usage: the sync client called from
``asyncio.to_thread``, many long-lived watches open at once while other requests and writes go
on, and a shutdown that ends open streams."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client, watch

from tests.support.kube_api import KubeApiDouble


def _watch_until(
    count: int, fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> list[dict[str, Any]]:
    """Runs in a worker thread: stream events until ``count`` arrived."""
    w = watch.Watch()
    got: list[dict[str, Any]] = []
    for event in w.stream(fn, *args, **kwargs):
        got.append(event)
        if len(got) == count:
            w.stop()
    return got


async def test_concurrent_watches_from_threads_all_see_every_change(
    kube: KubeApiDouble, api: client.ApiClient
) -> None:
    # One thread per open watch: the default executor has only min(32, cpus + 4) workers.
    executor = ThreadPoolExecutor(max_workers=12, thread_name_prefix="kube-watch")
    loop = asyncio.get_running_loop()

    def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        return loop.run_in_executor(executor, functools.partial(fn, *args, **kwargs))

    try:
        await _concurrent_watches(kube, api, in_thread)
    finally:
        kube.stop()  # ends any watch a failure left open, so the threads finish
        executor.shutdown(wait=True)


async def _concurrent_watches(
    kube: KubeApiDouble,
    api: client.ApiClient,
    in_thread: Callable[..., asyncio.Future[Any]],
) -> None:
    core = client.CoreV1Api(api)
    discovery = client.DiscoveryV1Api(api)
    custom = client.CustomObjectsApi(api)
    rv = (await in_thread(core.list_namespaced_service, "shop")).metadata.resource_version
    writes = 12
    service_watches = [
        in_thread(_watch_until, writes, core.list_namespaced_service, "shop", resource_version=rv)
        for _ in range(4)
    ]
    all_namespaces = in_thread(
        _watch_until, writes, core.list_service_for_all_namespaces, resource_version=rv
    )
    slices = in_thread(
        _watch_until, 1, discovery.list_namespaced_endpoint_slice, "shop", resource_version=rv
    )
    exports = in_thread(
        _watch_until,
        1,
        custom.list_namespaced_custom_object,
        "multicluster.x-k8s.io",
        "v1alpha1",
        "shop",
        "serviceexports",
        resource_version=rv,
    )
    await in_thread(kube.wait_for_watches, 7)
    # other requests are served while seven streams stay open
    assert (await in_thread(core.list_namespace)).items

    def create(i: int) -> None:
        core.create_namespaced_service(
            "shop",
            client.V1Service(
                metadata=client.V1ObjectMeta(name=f"svc-{i}"),
                spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)]),
            ),
        )

    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    await asyncio.gather(*(in_thread(create, i) for i in range(writes)))
    kube.create(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "svc-0-x", "namespace": "shop"},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"]}],
        }
    )
    kube.create(
        {
            "apiVersion": "multicluster.x-k8s.io/v1alpha1",
            "kind": "ServiceExport",
            "metadata": {"name": "svc-0", "namespace": "shop"},
        }
    )

    results = await asyncio.wait_for(
        asyncio.gather(*service_watches, all_namespaces, slices, exports), timeout=20
    )
    expected = {f"svc-{i}" for i in range(writes)}
    for events in results[:5]:
        assert {e["object"].metadata.name for e in events} == expected
        versions = [int(e["object"].metadata.resource_version) for e in events]
        assert versions == sorted(versions) and len(set(versions)) == writes
    assert results[5][0]["object"].metadata.name == "svc-0-x"
    assert results[6][0]["object"]["metadata"]["name"] == "svc-0"
    await in_thread(kube.wait_for_watches, 0, at_most=True)


async def test_stopping_the_double_ends_open_watches() -> None:
    kube = KubeApiDouble().start()
    core = client.CoreV1Api(kube.api_client())
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"ports": [{"port": 80}]},
        }
    )

    def consume() -> list[str]:
        # timeout_seconds makes the client stop when the server ends the stream
        stream = watch.Watch().stream(core.list_namespaced_service, "shop", timeout_seconds=60)
        return [e["type"] for e in stream]

    task = asyncio.create_task(asyncio.to_thread(consume))
    await asyncio.to_thread(kube.wait_for_watches, 1)
    await asyncio.to_thread(kube.stop)
    assert await asyncio.wait_for(task, timeout=10) == ["ADDED"]
