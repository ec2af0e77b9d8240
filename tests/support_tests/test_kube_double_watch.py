"""The API double's watch semantics, driven through the official client's ``Watch().stream``:
list then watch, resume, bookmarks, 410 after history expiry, server-ended streams, selectors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from tests.support.kube_api import KubeApiDouble


def service(name: str, namespace: str = "shop", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }


def test_list_then_watch_from_the_lists_resource_version(
    kube: KubeApiDouble, api: client.ApiClient, start_watch: Callable[..., Any]
) -> None:
    core = client.CoreV1Api(api)
    kube.create(service("web"))
    listed = core.list_namespaced_service("shop")
    assert [s.metadata.name for s in listed.items] == ["web"]
    rv = listed.metadata.resource_version
    assert rv == str(kube.resource_version)

    run = start_watch(core.list_namespaced_service, "shop", resource_version=rv)
    kube.wait_for_watches(1, "v1", "Service")
    created = kube.create(service("api"))
    updated = kube.apply({**service("api"), "spec": {"ports": [{"name": "http", "port": 8080}]}})
    deleted = kube.delete("v1", "Service", "web", "shop")

    added, modified, gone = run.take(3)
    assert added["type"] == "ADDED"
    assert isinstance(added["object"], client.V1Service)
    assert added["object"].metadata.name == "api"
    assert added["raw_object"]["kind"] == "Service"
    assert added["raw_object"]["apiVersion"] == "v1"
    assert added["object"].metadata.resource_version == created["metadata"]["resourceVersion"]
    assert modified["type"] == "MODIFIED"
    assert modified["object"].spec.ports[0].port == 8080
    assert modified["object"].metadata.generation == 2
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert gone["type"] == "DELETED"
    assert gone["object"].metadata.name == "web"
    # a DELETED event carries the object's last state at the deletion's resourceVersion
    assert gone["object"].metadata.resource_version == deleted["metadata"]["resourceVersion"]
    assert run.watch.resource_version == deleted["metadata"]["resourceVersion"]
    assert run.events.empty()


def test_watch_without_resource_version_replays_existing_objects_as_added(
    kube: KubeApiDouble, api: client.ApiClient, start_watch: Callable[..., Any]
) -> None:
    core = client.CoreV1Api(api)
    kube.create(service("a"))
    kube.create(service("b"))
    kube.create(service("c", namespace="other"))
    run = start_watch(core.list_namespaced_service, "shop")
    first = run.take(2)
    assert [(e["type"], e["object"].metadata.name) for e in first] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
    ]
    zero = start_watch(core.list_service_for_all_namespaces, resource_version="0")
    names = sorted(e["object"].metadata.name for e in zero.take(3))
    assert names == ["a", "b", "c"]
    kube.create(service("d"))
    assert run.next()["object"].metadata.name == "d"
    assert zero.next()["object"].metadata.name == "d"


def test_resume_from_a_resource_version_gets_only_later_changes(
    kube: KubeApiDouble, api: client.ApiClient, start_watch: Callable[..., Any]
) -> None:
    core = client.CoreV1Api(api)
    kube.create(service("a"))
    mark = str(kube.resource_version)
    kube.create(service("b"))
    kube.delete("v1", "Service", "a", "shop")
    run = start_watch(core.list_namespaced_service, "shop", resource_version=mark)
    events = run.take(2)
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "b"),
        ("DELETED", "a"),
    ]
    assert run.events.empty()


def test_server_closing_the_stream_makes_the_client_resume_without_repeats(
    kube: KubeApiDouble, api: client.ApiClient, start_watch: Callable[..., Any]
) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_service("shop").metadata.resource_version
    run = start_watch(core.list_namespaced_service, "shop", resource_version=rv)
    kube.wait_for_watches(1)
    kube.create(service("a"))
    assert run.next()["object"].metadata.name == "a"
    assert kube.close_watches() == 1
    kube.wait_for_watches(1)  # the client re-issued the watch
    kube.create(service("b"))
    assert run.next()["object"].metadata.name == "b"
    assert run.events.empty()
    watches = [r for r in kube.requests if r.watch]
    assert len(watches) == 2
    assert watches[1].query["resourceVersion"] == str(kube.resource_version - 1)


def test_bookmarks_arrive_when_allowed_and_advance_the_resume_point(
    kube: KubeApiDouble, api: client.ApiClient, start_watch: Callable[..., Any]
) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_service("shop").metadata.resource_version
    with_bookmarks = start_watch(
        core.list_namespaced_service, "shop", resource_version=rv, allow_watch_bookmarks=True
    )
    without = start_watch(core.list_namespaced_service, "shop", resource_version=rv)
    kube.wait_for_watches(2)
    kube.create(service("x", namespace="elsewhere"))  # invisible to both watches
    assert kube.send_bookmark() == 1
    bookmark = with_bookmarks.next()
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["raw_object"]["metadata"] == {"resourceVersion": str(kube.resource_version)}
    assert bookmark["raw_object"]["kind"] == "Service"
    assert with_bookmarks.watch.resource_version == str(kube.resource_version)
    kube.create(service("y"))
    assert without.next()["type"] == "ADDED"  # no bookmark came before it
    assert with_bookmarks.next()["type"] == "ADDED"


def test_periodic_bookmarks(api: client.ApiClient, start_watch: Callable[..., Any]) -> None:
    del api
    with KubeApiDouble(bookmark_interval_s=0.05) as kube:
        core = client.CoreV1Api(kube.api_client())
        run = start_watch(
            core.list_namespaced_pod, "default", resource_version="1", allow_watch_bookmarks=True
        )
        assert run.next()["type"] == "BOOKMARK"
        assert run.next()["type"] == "BOOKMARK"
        run.stop()
        kube.close_watches()
        run.wait_done()


def test_watch_from_an_expired_resource_version_gets_the_410_error_event(
    kube: KubeApiDouble, api: client.ApiClient
) -> None:
    core = client.CoreV1Api(api)
    old = core.list_namespaced_service("shop").metadata.resource_version
    kube.create(service("a"))
    compacted = kube.expire_history()
    # the raw stream: 200, one ERROR line with the Status object, then the end
    resp = core.list_namespaced_service(
        "shop", watch=True, resource_version=old, _preload_content=False
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert "Content-Encoding" not in resp.headers
    lines = resp.data.decode().split("\n")
    assert lines[-1] == ""
    assert [json.loads(line) for line in lines[:-1]] == [
        {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: {old} ({compacted})",
                "reason": "Expired",
                "code": 410,
            },
        }
    ]


def test_the_client_retries_a_410_once_then_raises(
    kube: KubeApiDouble, api: client.ApiClient
) -> None:
    from kubernetes import watch

    core = client.CoreV1Api(api)
    old = core.list_namespaced_service("shop").metadata.resource_version
    kube.create(service("a"))
    kube.expire_history()
    with pytest.raises(client.ApiException) as info:
        for _ in watch.Watch().stream(core.list_namespaced_service, "shop", resource_version=old):
            pass
    assert info.value.status == 410
    assert "Expired: too old resource version" in str(info.value.reason)
    watches = [r for r in kube.requests if r.watch]
    assert [r.query["resourceVersion"] for r in watches] == [old, old]
    # a relist gives a resourceVersion that watches again
    fresh = core.list_namespaced_service("shop").metadata.resource_version
    resp = core.list_namespaced_service(
        "shop", watch=True, resource_version=fresh, timeout_seconds=1, _preload_content=False
    )
    assert resp.data == b""


def test_expire_watches_ends_open_streams_with_410(
    kube: KubeApiDouble, api: client.ApiClient, start_watch: Callable[..., Any]
) -> None:
    core = client.CoreV1Api(api)
    old = core.list_namespaced_service("shop").metadata.resource_version
    run = start_watch(core.list_namespaced_service, "shop", resource_version=old)
    kube.wait_for_watches(1)
    kube.create(service("a", namespace="elsewhere"))  # the watch's resume point stays at `old`
    kube.expire_history()
    assert kube.expire_watches() == 1
    run.wait_done()
    assert isinstance(run.error, client.ApiException)
    assert run.error.status == 410


def test_expired_watch_as_http_410_raises_at_once() -> None:
    from kubernetes import watch

    with KubeApiDouble(expired_watch_as_http_410=True) as kube:
        core = client.CoreV1Api(kube.api_client())
        kube.create(service("a"))
        kube.expire_history()
        with pytest.raises(client.ApiException) as info:
            for _ in watch.Watch().stream(
                core.list_namespaced_service, "shop", resource_version="1"
            ):
                pass
        assert info.value.status == 410
        assert json.loads(info.value.body)["reason"] == "Expired"
        assert len([r for r in kube.requests if r.watch]) == 1


def test_timeout_seconds_ends_the_stream(kube: KubeApiDouble, api: client.ApiClient) -> None:
    from kubernetes import watch

    core = client.CoreV1Api(api)
    kube.create(service("a"))
    events = list(watch.Watch().stream(core.list_namespaced_service, "shop", timeout_seconds=1))
    assert [e["type"] for e in events] == ["ADDED"]
    kube.wait_for_watches(0, at_most=True)


def test_label_selector_watch_sees_objects_enter_and_leave(
    kube: KubeApiDouble, api: client.ApiClient, start_watch: Callable[..., Any]
) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_service("shop").metadata.resource_version
    run = start_watch(
        core.list_namespaced_service, "shop", resource_version=rv, label_selector="tier=front"
    )
    kube.wait_for_watches(1)
    kube.create(service("a", tier="back"))
    kube.apply(service("a", tier="front"))
    kube.apply(service("a", tier="back"))
    events = run.take(2)
    assert [(e["type"], e["object"].metadata.labels["tier"]) for e in events] == [
        ("ADDED", "front"),
        ("DELETED", "back"),
    ]


def test_send_initial_events_ends_with_the_initial_events_end_bookmark(
    kube: KubeApiDouble, api: client.ApiClient, start_watch: Callable[..., Any]
) -> None:
    core = client.CoreV1Api(api)
    kube.create(service("a"))
    run = start_watch(
        core.list_namespaced_service,
        "shop",
        send_initial_events=True,
        resource_version_match="NotOlderThan",
        allow_watch_bookmarks=True,
    )
    added, bookmark = run.take(2)
    assert added["type"] == "ADDED"
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["raw_object"]["metadata"]["annotations"] == {
        "k8s.io/initial-events-end": "true"
    }


def test_watch_flag_is_parsed_case_insensitively(
    kube: KubeApiDouble, api: client.ApiClient
) -> None:
    kube.create(service("a"))
    for flag in ("True", "true", "1"):  # clients up to v36 send "True"
        resp = api.call_api(
            "GET",
            f"{kube.url}/api/v1/namespaces/shop/services?watch={flag}",
            header_params={"Authorization": f"Bearer {kube.token}"},
        )
        assert resp.status == 200
        first = resp.response.readline()  # the stream stays open: read one event, then hang up
        resp.response.close()
        assert json.loads(first)["type"] == "ADDED", flag
        kube.wait_for_watches(0, at_most=True)  # the hang-up ended the watch on the server
    resp = api.call_api(
        "GET",
        f"{kube.url}/api/v1/namespaces/shop/services?watch=maybe",
        header_params={"Authorization": f"Bearer {kube.token}"},
    )
    resp.read()
    assert resp.status == 400
