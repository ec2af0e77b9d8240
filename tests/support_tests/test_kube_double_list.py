"""The API double's list semantics through the official client: resourceVersion and
resourceVersionMatch, limit/continue pages, label and field selectors, all-namespaces lists."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from tests.support.kube_api import KubeApiDouble


def pod(name: str, namespace: str = "shop", sa: str = "web", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"serviceAccountName": sa, "containers": [{"name": "app", "image": "app:1"}]},
    }


def status_of(exc: client.ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


def test_list_resource_version_is_the_current_global_revision(
    kube: KubeApiDouble, api: client.ApiClient
) -> None:
    core = client.CoreV1Api(api)
    kube.create(pod("a"))
    kube.create(pod("b", namespace="other"))
    listed = core.list_namespaced_pod("shop")
    assert listed.metadata.resource_version == str(kube.resource_version)
    assert [p.metadata.name for p in listed.items] == ["a"]
    assert listed.items[0].spec.service_account_name == "web"
    everywhere = core.list_pod_for_all_namespaces()
    assert sorted(p.metadata.namespace for p in everywhere.items) == ["other", "shop"]
    # the default namespaces exist, as in a fresh cluster
    names = {n.metadata.name for n in core.list_namespace().items}
    assert {"default", "kube-system", "shop", "other"} <= names


def test_exact_list_returns_the_state_at_that_resource_version(
    kube: KubeApiDouble, api: client.ApiClient
) -> None:
    core = client.CoreV1Api(api)
    kube.create(pod("a"))
    then = str(kube.resource_version)
    kube.create(pod("b"))
    kube.delete("v1", "Pod", "a", "shop")
    exact = core.list_namespaced_pod("shop", resource_version=then, resource_version_match="Exact")
    assert exact.metadata.resource_version == then
    assert [p.metadata.name for p in exact.items] == ["a"]
    newer = core.list_namespaced_pod(
        "shop", resource_version=then, resource_version_match="NotOlderThan"
    )
    assert [p.metadata.name for p in newer.items] == ["b"]
    kube.expire_history()
    with pytest.raises(client.ApiException) as info:
        core.list_namespaced_pod("shop", resource_version=then, resource_version_match="Exact")
    assert info.value.status == 410
    assert status_of(info.value)["reason"] == "Expired"


def test_list_from_a_future_resource_version_is_a_timeout(
    kube: KubeApiDouble, api: client.ApiClient
) -> None:
    core = client.CoreV1Api(api)
    future = str(kube.resource_version + 100)
    with pytest.raises(client.ApiException) as info:
        core.list_namespaced_pod("shop", resource_version=future)
    assert info.value.status == 504
    assert status_of(info.value)["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


def test_bad_list_options_are_invalid(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    with pytest.raises(client.ApiException) as info:
        core.list_namespaced_pod("shop", resource_version_match="Exact")
    assert info.value.status == 422
    assert status_of(info.value)["reason"] == "Invalid"
    with pytest.raises(client.ApiException) as info:
        core.list_namespaced_pod("shop", resource_version="1", resource_version_match="Sometimes")
    assert info.value.status == 422


def test_limit_and_continue_give_a_consistent_snapshot(
    kube: KubeApiDouble, api: client.ApiClient
) -> None:
    core = client.CoreV1Api(api)
    for i in range(5):
        kube.create(pod(f"p{i}"))
    first = core.list_namespaced_pod("shop", limit=2)
    assert [p.metadata.name for p in first.items] == ["p0", "p1"]
    assert first.metadata.remaining_item_count == 3
    token = first.metadata._continue
    assert token
    kube.create(pod("p2a"))  # written after the first page: not in the continued pages
    kube.delete("v1", "Pod", "p4", "shop")
    second = core.list_namespaced_pod("shop", limit=2, _continue=token)
    assert [p.metadata.name for p in second.items] == ["p2", "p3"]
    assert second.metadata.resource_version == first.metadata.resource_version
    third = core.list_namespaced_pod("shop", limit=2, _continue=second.metadata._continue)
    assert [p.metadata.name for p in third.items] == ["p4"]
    assert not third.metadata._continue
    # once the history is compacted, the token is too old
    kube.expire_history()
    with pytest.raises(client.ApiException) as info:
        core.list_namespaced_pod("shop", limit=2, _continue=token)
    assert info.value.status == 410
    with pytest.raises(client.ApiException) as info:
        core.list_namespaced_pod("shop", limit=2, _continue="not-a-token")
    assert info.value.status == 400


def test_label_selectors(kube: KubeApiDouble, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    kube.create(pod("a", app="web", tier="front"))
    kube.create(pod("b", app="web", tier="back"))
    kube.create(pod("c", app="db"))

    def names(selector: str) -> list[str]:
        return [
            p.metadata.name for p in core.list_namespaced_pod("shop", label_selector=selector).items
        ]

    assert names("app=web") == ["a", "b"]
    assert names("app==web,tier!=back") == ["a"]
    assert names("tier") == ["a", "b"]
    assert names("!tier") == ["c"]
    assert names("tier in (front, middle)") == ["a"]
    assert names("tier notin (front)") == ["b", "c"]
    with pytest.raises(client.ApiException) as info:
        names("app in (web")
    assert info.value.status == 400
    assert status_of(info.value)["reason"] == "BadRequest"


def test_field_selectors(kube: KubeApiDouble, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    kube.create(pod("a", sa="web"))
    kube.create(pod("b", sa="db"))
    by_name = core.list_namespaced_pod("shop", field_selector="metadata.name=b")
    assert [p.metadata.name for p in by_name.items] == ["b"]
    by_sa = core.list_pod_for_all_namespaces(field_selector="spec.serviceAccountName!=db")
    assert [p.metadata.name for p in by_sa.items] == ["a"]
    with pytest.raises(client.ApiException) as info:
        core.list_namespaced_pod("shop", field_selector="spec.bogus=1")
    assert info.value.status == 400
    assert "field label not supported" in status_of(info.value)["message"]
