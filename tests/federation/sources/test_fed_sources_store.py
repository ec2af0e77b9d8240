"""ObjectStore: keys, meaningful-change detection, relist diffs, synced, wait_changed, and the
validated view through ``gateway.config.loader.load_objects``."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from federation.sources.store import ObjectStore, StoreKey, key_for, same_object
from gateway.config.errors import ConfigError, Problem
from gateway.config.kinds import Service
from gateway.config.loader import load_objects
from tests.federation.sources.conftest import endpoint_slice, service


def _settings(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "isthmus.dev/v1alpha1",
        "kind": "ProxySettings",
        "metadata": {"name": name, "namespace": "isthmus-system"},
        "spec": {},
    }


def test_keys_default_the_namespace_and_drop_it_for_cluster_scoped_kinds() -> None:
    assert key_for({"kind": "Service", "metadata": {"name": "a"}}) == StoreKey(
        "Service", "default", "a"
    )
    assert key_for({"kind": "Node", "metadata": {"name": "n", "namespace": "x"}}) == StoreKey(
        "Node", "", "n"
    )
    assert key_for({"kind": "GatewayClass", "metadata": {"name": "g"}}).namespace == ""
    with pytest.raises(ValueError):
        key_for({"kind": "Service", "metadata": {}})


def test_only_meaningful_changes_count() -> None:
    a = service("web")
    a["metadata"]["resourceVersion"] = "5"
    b = copy.deepcopy(a)
    b["metadata"]["resourceVersion"] = "9"
    b["status"] = {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}  # never read by the proxy
    assert same_object(a, b)
    c = copy.deepcopy(b)
    c["spec"]["ports"][0]["port"] = 81
    assert not same_object(a, c)
    pod = {"kind": "Pod", "metadata": {"name": "p", "resourceVersion": "1"}, "status": {"a": 1}}
    moved = {"kind": "Pod", "metadata": {"name": "p", "resourceVersion": "2"}, "status": {"a": 2}}
    assert not same_object(pod, moved)  # a Pod's (trimmed) status is read: its address


def test_put_remove_and_versions() -> None:
    store = ObjectStore()
    seen: list[str] = []
    store.subscribe(lambda c: seen.append(f"{c.type} {c.key}"))
    assert store.put(service("web"), source="s", origin="o")
    assert not store.put(service("web"), source="s", origin="o")  # nothing new
    assert store.version == 1
    assert store.put(service("web", ports=(81,)), source="s", origin="o")
    assert not store.remove("Service", "shop", "web", source="other")  # not its object
    assert store.remove("Service", "shop", "web", source="s")
    assert not store.remove("Service", "shop", "web", source="s")
    assert seen == [
        "ADDED Service shop/web",
        "MODIFIED Service shop/web",
        "DELETED Service shop/web",
    ]
    assert store.version == 3
    assert dict(store.counts) == {"ADDED": 1, "MODIFIED": 1, "DELETED": 1}


def test_replace_is_a_diff_of_one_source_and_kind() -> None:
    store = ObjectStore()
    for name in ("a", "b", "c"):
        store.put(service(name), source="kube", origin="k")
    store.put(service("mine"), source="dir", origin="f")
    store.put(endpoint_slice("a", ("10.0.0.1",)), source="kube", origin="k")
    version = store.version

    changes = store.replace(
        ["Service"],
        [(service("a"), "k"), (service("b", ports=(81,)), "k"), (service("d"), "k")],
        source="kube",
    )
    assert sorted((c.type, str(c.key)) for c in changes) == [
        ("ADDED", "Service shop/d"),
        ("DELETED", "Service shop/c"),
        ("MODIFIED", "Service shop/b"),
    ]
    assert store.version == version + 1  # one version per relist
    assert store.get("Service", "shop", "mine") is not None  # another source's object
    assert store.get("EndpointSlice", "shop", "a-a") is not None  # another kind
    assert store.replace(["Service"], [(service("a"), "k"), (service("b", ports=(81,)), "k"),
                                       (service("d"), "k")], source="kube") == []  # fmt: skip
    assert store.version == version + 1


async def test_synced_waits_for_every_expected_list() -> None:
    store = ObjectStore()
    store.mark_synced("early")  # nothing expected yet: not synced
    assert not store.synced.is_set()
    store.expect("kube/Service")
    store.expect("kube/Pod")
    store.mark_synced("kube/Service")
    assert not store.synced.is_set()
    assert store.pending() == ["kube/Pod"]
    store.mark_synced("kube/Pod")
    await asyncio.wait_for(store.synced.wait(), 1)


async def test_wait_changed_wakes_on_the_next_change() -> None:
    store = ObjectStore()
    waiter = asyncio.create_task(store.wait_changed(store.version))
    await asyncio.sleep(0)
    assert not waiter.done()
    store.put(service("web"), source="s", origin="o")  # same, no change: does not wake
    assert await asyncio.wait_for(waiter, 1) == 1
    assert await store.wait_changed(0) == 1  # already past: returns at once
    quiet = asyncio.create_task(store.wait_changed(1))
    store.put(service("web"), source="s", origin="o")
    await asyncio.sleep(0.01)
    assert not quiet.done()
    quiet.cancel()


def test_resources_validate_skip_and_report_invalid_objects() -> None:
    store = ObjectStore()
    store.put(service("web"), source="kube", origin="kubernetes https://k")
    bad = service("bad")
    bad["spec"]["ports"][0]["port"] = 0
    store.put(bad, source="kube", origin="kubernetes https://k")
    store.put({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}}, source="kube",
              origin="k")  # fmt: skip
    store.put(_settings("one"), source="kube", origin="k")
    store.put(_settings("two"), source="kube", origin="k")

    resources = store.resources()
    assert [(o.kind, o.name) for o in resources.objects] == [
        ("ProxySettings", "one"),
        ("Service", "web"),
    ]
    problems = store.problems()
    assert [p.obj for p in problems] == ["Service shop/bad", "ProxySettings isthmus-system/two"]
    assert problems[0].file == "kubernetes https://k"
    assert problems[0].path == "spec.ports[0].port"
    assert store.resources() is resources  # cached until the next change
    store.remove("Service", "shop", "bad", source="kube")
    assert len(store.problems()) == 1


def test_source_problems_are_listed_first() -> None:
    store = ObjectStore()
    store.set_source_problems("dir", [Problem("a.yaml", "invalid YAML")])
    assert [p.message for p in store.problems()] == ["invalid YAML"]


def test_load_objects_is_strict_without_a_problem_list() -> None:
    bad = service("bad")
    bad["spec"]["ports"][0]["protocol"] = "UDP"
    with pytest.raises(ConfigError) as raised:
        load_objects([service("web"), bad], "cluster")
    assert "Service shop/bad" in str(raised.value)
    problems: list[Problem] = []
    loaded = load_objects(
        [service("web"), bad, _settings("a"), _settings("b")], "cluster", problems
    )
    assert [o.name for o in loaded.objects] == ["a", "web"]
    assert isinstance(loaded.objects[1], Service)
    assert [p.obj for p in problems] == ["Service shop/bad", "ProxySettings isthmus-system/b"]
    assert str(problems[0]).startswith("cluster: Service shop/bad: spec.ports[0].protocol")
