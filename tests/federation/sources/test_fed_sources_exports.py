"""local_exports: which local Services a ServiceExport publishes, with what ports, ready count and
export_to (table tests over an ObjectStore)."""

from __future__ import annotations

from typing import Any

import pytest

from federation.exports import local_exports
from federation.model import EXPORT_TO_ANNOTATION, ExportedService, ServicePort
from federation.sources.store import ObjectStore
from tests.federation.sources.conftest import service, service_export


def _slice(
    svc: str, suffix: str, ready: dict[str, bool | None], ns: str = "shop"
) -> dict[str, Any]:
    endpoints = []
    for address, state in ready.items():
        endpoint: dict[str, Any] = {"addresses": [address]}
        if state is not None:
            endpoint["conditions"] = {"ready": state}
        endpoints.append(endpoint)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{svc}-{suffix}", "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": endpoints,
    }  # fmt: skip


def _multi_port() -> dict[str, Any]:
    svc = service("web")
    svc["spec"]["ports"] = [
        {"name": "http", "port": 80, "appProtocol": "http"},
        {"name": "grpc", "port": 9090, "appProtocol": "kubernetes.io/h2c"},
    ]
    return svc


def _udp() -> dict[str, Any]:
    svc = service("web")
    svc["spec"]["ports"] = [{"name": "dns", "port": 53, "protocol": "UDP"}]
    return svc


WEB_80 = (ServicePort(name="p80", port=80),)

CASES: list[tuple[str, list[dict[str, Any]], list[ExportedService]]] = [
    ("no ServiceExport, no export", [service("web")], []),
    ("a ServiceExport without its Service exports nothing", [service_export("web")], []),
    (
        "a ServiceExport in another namespace does not match",
        [service("web"), service_export("web", "other")],
        [],
    ),
    (
        "a Service with no endpoints is exported with 0 ready",
        [service("web"), service_export("web")],
        [ExportedService(namespace="shop", name="web", ports=WEB_80, ready_endpoints=0)],
    ),
    (
        "ready counts distinct ready addresses over every slice; ready unset means ready",
        [
            service("web"),
            service_export("web"),
            _slice("web", "a", {"10.0.0.1": True, "10.0.0.2": False, "10.0.0.3": None}),
            _slice("web", "b", {"10.0.0.1": True, "10.0.0.4": True}),
            _slice("api", "a", {"10.0.0.9": True}),
            _slice("web", "o", {"10.0.0.8": True}, ns="other"),
        ],
        [ExportedService(namespace="shop", name="web", ports=WEB_80, ready_endpoints=3)],
    ),
    (
        "ports keep their names and appProtocol",
        [_multi_port(), service_export("web")],
        [
            ExportedService(
                namespace="shop",
                name="web",
                ports=(
                    ServicePort(name="http", port=80, app_protocol="http"),
                    ServicePort(name="grpc", port=9090, app_protocol="kubernetes.io/h2c"),
                ),
                ready_endpoints=0,
            )
        ],
    ),
    (
        "export-to lists clusters (trimmed, deduplicated, sorted)",
        [service("web"), service_export("web", annotations={EXPORT_TO_ANNOTATION: " b, a,,b "})],
        [
            ExportedService(
                namespace="shop",
                name="web",
                ports=WEB_80,
                ready_endpoints=0,
                export_to=("a", "b"),
            )
        ],
    ),
    (
        "a blank export-to means every cluster",
        [service("web"), service_export("web", annotations={EXPORT_TO_ANNOTATION: " "})],
        [ExportedService(namespace="shop", name="web", ports=WEB_80, ready_endpoints=0)],
    ),
    (
        "a Service the proxy cannot use (UDP only) is not exported",
        [_udp(), service_export("web")],
        [],
    ),
    (
        "several exports come sorted by namespace and name",
        [
            service("b"),
            service("a"),
            service("a", "x"),
            service_export("b"),
            service_export("a"),
            service_export("a", "x"),
        ],
        [
            ExportedService(namespace="shop", name="a", ports=WEB_80, ready_endpoints=0),
            ExportedService(namespace="shop", name="b", ports=WEB_80, ready_endpoints=0),
            ExportedService(namespace="x", name="a", ports=WEB_80, ready_endpoints=0),
        ],
    ),
]


@pytest.mark.parametrize(("objects", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_local_exports(objects: list[dict[str, Any]], expected: list[ExportedService]) -> None:
    store = ObjectStore()
    for obj in objects:
        store.put(obj, source="test", origin="test")
    assert local_exports(store) == expected
