"""The kinds table (every proxy kind is read, with its resource name), the cleaning of API server
objects, and the backoff schedule."""

from __future__ import annotations

from federation.sources.backoff import Backoff
from federation.sources.kinds import BY_KIND, LAST_APPLIED, PLURALS, SOURCE_KINDS, clean
from gateway.config.kinds import KINDS


def test_every_configuration_kind_is_read_with_its_resource_name() -> None:
    assert set(KINDS) <= set(BY_KIND)
    assert set(KINDS) <= set(PLURALS)
    for kind in SOURCE_KINDS:
        if kind.config:
            cls = KINDS[kind.kind]
            assert kind.api_versions == cls.api_versions
            assert kind.namespaced == cls.namespaced
    assert BY_KIND["Secret"].field_selector == "type=kubernetes.io/tls"
    assert {"ServiceExport", "Pod", "Node"} <= set(BY_KIND)
    assert not BY_KIND["Node"].namespaced


def test_clean_strips_server_noise_and_fills_kind() -> None:
    item = {
        "metadata": {
            "name": "web-x7k2p",
            "generateName": "web-",
            "namespace": "shop",
            "selfLink": "/apis/...",
            "managedFields": [{"manager": "kube-controller-manager"}],
            "annotations": {LAST_APPLIED: "{...}", "keep": "me"},
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"], "hints": {"forZones": [{"name": "a"}]}}],
    }
    out = clean(item, BY_KIND["EndpointSlice"], "discovery.k8s.io/v1")
    assert out["kind"] == "EndpointSlice" and out["apiVersion"] == "discovery.k8s.io/v1"
    assert set(out["metadata"]) == {"name", "namespace", "annotations", "labels"}
    assert out["metadata"]["annotations"] == {"keep": "me"}
    assert out["endpoints"] == [{"addresses": ["10.0.0.1"]}]
    assert "generateName" in item["metadata"]  # the input is not modified


def test_pods_and_nodes_are_trimmed() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "shop", "labels": {"app": "web"}, "uid": "u",
                     "resourceVersion": "3", "ownerReferences": [{}]},
        "spec": {"serviceAccountName": "web", "nodeName": "n1", "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.1", "conditions": [{}]},
    }  # fmt: skip
    out = clean(pod, BY_KIND["Pod"], "v1")
    assert out["spec"] == {"serviceAccountName": "web", "nodeName": "n1"}
    assert out["status"] == {"phase": "Running", "podIP": "10.0.0.1"}
    assert "ownerReferences" not in out["metadata"]
    node = {
        "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "a",
                                              "kubernetes.io/os": "linux"}},
        "status": {"images": ["big"]},
    }  # fmt: skip
    assert clean(node, BY_KIND["Node"], "v1") == {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "a"}},
    }


def test_backoff_doubles_up_to_its_cap_with_jitter_and_resets() -> None:
    low = Backoff(0.5, 4.0, rng=lambda: 0.0)
    assert [low.next_delay() for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    high = Backoff(0.5, 4.0, rng=lambda: 0.999999)
    delays = [high.next_delay() for _ in range(6)]
    assert all(0.0 < d <= 4.0 for d in delays)
    assert delays[-1] > 3.99
    high.reset()
    assert high.next_delay() < 0.5
