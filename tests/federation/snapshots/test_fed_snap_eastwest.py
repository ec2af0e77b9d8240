"""The east-west gateway's snapshot (``federation.snapshots.eastwest``): one SNI passthrough
port whose routes are exactly the exported Service ports, over the local clusters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from federation.snapshots.compile import ProxyInfo, compile_for
from federation.snapshots.hub import SnapshotHub
from gateway.config.resources import Resources
from tests.federation.snapshots.fed_snap_helpers import imported, keyed
from tests.federation.snapshots.test_fed_snap_compile import GATEWAY, ROUTE, WEB

EASTWEST = ProxyInfo(id="ew-1", role="eastwest", namespace="istio-system",
                     workload="isthmus-eastwest")  # fmt: skip
API = """
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  ports: [{name: http, port: 8080}, {name: grpc, port: 9090, appProtocol: grpc}]
"""
INTERNAL = """
apiVersion: v1
kind: Service
metadata: {name: internal, namespace: default}
spec:
  ports: [{name: http, port: 80}]
"""


def export(name: str, namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
            "metadata": {"name": name, "namespace": namespace}}  # fmt: skip


@pytest.fixture
def resources(load_yaml: Callable[..., Resources]) -> Resources:
    return load_yaml(GATEWAY, ROUTE, WEB.replace("READY", "true"), API, INTERNAL)


def test_one_passthrough_port_routes_each_exported_service_port_by_sni(
    resources: Resources,
) -> None:
    # web is also exported by another cluster: the gateway's clusters stay local anyway.
    imports = keyed(imported("west", "web", 80, address="192.0.2.10"))
    snap = compile_for(EASTWEST, resources, imports, "east", gateway_port=15443,
                       service_exports=[export("web"), export("api", "shop")])  # fmt: skip
    assert snap.version
    [binding] = snap.ports  # the ingress's Gateway listener (8080) is not here
    assert (binding.address, binding.port, binding.protocol) == ("0.0.0.0", 15443, "TLS")
    [listener] = binding.listeners
    routes = {r.hostnames[0]: [b.cluster for b in r.backends] for r in listener.tls_routes}
    assert routes == {
        "outbound_.80_._.web.default.svc.cluster.local": ["default/web:80"],
        "outbound_.8080_._.api.shop.svc.cluster.local": ["shop/api:8080"],
        "outbound_.9090_._.api.shop.svc.cluster.local": ["shop/api:9090"],
    }
    clusters = snap.cluster_map()
    assert set(clusters) == {"default/web:80", "default/internal:80", "shop/api:8080",
                             "shop/api:9090"}  # fmt: skip
    # Local endpoints only: no other cluster's gateway appended for failover.
    assert [e.address for e in clusters["default/web:80"].endpoints] == ["10.0.0.1"]
    assert all(e.tls is None for c in clusters.values() for e in c.endpoints)
    assert (snap.node.workload, snap.node.namespace, snap.node.cluster) == (
        "isthmus-eastwest", "istio-system", "east")  # fmt: skip
    assert snap.unresolved == ()


def test_exports_of_missing_services_add_no_route(resources: Resources) -> None:
    snap = compile_for(EASTWEST, resources, {}, "east", gateway_port=15443,
                       service_exports=[export("nowhere"), export("web", "shop")])  # fmt: skip
    assert snap.ports[0].listeners[0].tls_routes == ()


async def test_the_hub_compiles_the_eastwest_role_from_its_inputs(resources: Resources) -> None:
    hub = SnapshotHub("east", gateway_port=15999)
    hub.update(resources, {}, [export("web")])
    hub.flush()
    snap = hub.snapshot_for(EASTWEST)
    assert snap is not None and snap.ports[0].port == 15999
    [route] = snap.ports[0].listeners[0].tls_routes
    assert route.hostnames == ("outbound_.80_._.web.default.svc.cluster.local",)
    hub.update(resources, {}, [])  # unexported: the route goes
    hub.flush()
    after = hub.snapshot_for(EASTWEST)
    assert after is not None and after.ports[0].listeners[0].tls_routes == ()
    assert after.version != snap.version
    await hub.aclose()
