"""Per-proxy snapshot compilation: determinism, imported clusters, failover, the routing rule.

The failover test runs the compiled cluster through the data plane's own cluster manager,
so what is checked is where requests would go, not only the shape of the data.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest

from federation.model import ImportedService
from federation.snapshots.compile import (
    CLUSTER_LABEL,
    CompileCache,
    ProxyInfo,
    clusterset_cluster_name,
    compile_for,
)
from gateway.config.errors import ConfigError
from gateway.config.kinds import EndpointSlice
from gateway.config.resources import Resources
from gateway.config.snapshot import Endpoint, LocalityLb, Snapshot, UpstreamTls
from gateway.upstream.cluster import ClusterManager
from tests.federation.snapshots.fed_snap_helpers import imported, keyed

PROXY = ProxyInfo(id="ingress-1")

GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: isthmus
  listeners: [{name: http, port: 8080, protocol: HTTP}]
"""
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [web.default.svc.clusterset.local, api.default.svc.clusterset.local]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: api, port: 8080}]
  - backendRefs: [{name: web, port: 80}]
"""
WEB = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports: [{name: http, port: 80, targetPort: 8000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints: [{addresses: [10.0.0.1], conditions: {ready: READY}}]
ports: [{name: http, port: 8000}]
"""


@pytest.fixture
def resources(load_yaml: Callable[..., Resources]) -> Resources:
    return load_yaml(GATEWAY, ROUTE, WEB.replace("READY", "true"))


def _imports() -> dict[tuple[str, str, str], ImportedService]:
    return keyed(
        imported("west", "web", 80, address="192.0.2.10", locality="us-west/us-west-1a", ready=2),
        imported("west", "api", 8080, address="192.0.2.10", locality="us-west/us-west-1a"),
        imported("south", "api", (8080, "grpc"), 9090, address="198.51.100.7", ready=0),
        imported("east", "web", 80, address="203.0.113.1"),  # our own cluster: ignored
    )


def _compile(
    resources: Resources, imports: dict[tuple[str, str, str], ImportedService]
) -> Snapshot:
    return compile_for(PROXY, resources, imports, "east")


def test_same_inputs_give_the_same_version_whatever_the_import_order(
    resources: Resources,
) -> None:
    imports = _imports()
    first = _compile(resources, imports)
    again = _compile(resources, dict(reversed(list(imports.items()))))
    assert first.version and first.version == again.version
    assert msgspec.json.encode(first) == msgspec.json.encode(again)
    assert first == first.with_version()  # the version is the hash of the content


def test_a_change_of_an_import_changes_the_version(resources: Resources) -> None:
    before = _compile(resources, _imports())
    imports = _imports()
    imports[("west", "default", "web")] = imported("west", "web", 80, healthy=False)
    after = _compile(resources, imports)
    assert after.version != before.version


def test_imported_services_become_clusterset_clusters(resources: Resources) -> None:
    snap = _compile(resources, _imports())
    clusters = snap.cluster_map()
    assert clusterset_cluster_name("default", "api", 8080) == "default/api.clusterset:8080"
    api = clusters["default/api.clusterset:8080"]
    # One endpoint per exporting cluster, sorted by cluster, each its east-west gateway.
    assert [(e.address, e.port) for e in api.endpoints] == [
        ("198.51.100.7", 15443),
        ("192.0.2.10", 15443),
    ]
    south, west = api.endpoints
    assert dict(south.labels) == {CLUSTER_LABEL: "south"}
    assert dict(west.labels) == {CLUSTER_LABEL: "west"}
    assert (west.region, west.zone, west.subzone) == ("us-west", "us-west-1a", None)
    assert west.ready and not south.ready  # south reports no ready endpoint
    assert api.tls == UpstreamTls(
        mode="ISTIO_MUTUAL",
        sni="outbound_.8080_._.api.default.svc.cluster.local",
        subject_alt_names=("spiffe://south.local/ns/default/*", "spiffe://west.local/ns/default/*"),
    )
    assert api.origin_cluster == "south,west"
    assert api.protocol == "h2c"  # the first exporter (south) says grpc
    assert api.locality_lb == LocalityLb()
    # A port only one exporter has is a cluster of that exporter alone.
    only_south = clusters["default/api.clusterset:9090"]
    assert [e.address for e in only_south.endpoints] == ["198.51.100.7"]
    assert only_south.origin_cluster == "south"
    # Our own cluster's export is not imported back.
    web = clusters["default/web.clusterset:80"]
    assert [e.address for e in web.endpoints] == ["192.0.2.10"]
    assert snap.node.cluster == "east"
    assert dict(snap.node.labels)[CLUSTER_LABEL] == "east"


def test_a_local_service_exported_elsewhere_gets_the_remote_gateways_appended(
    resources: Resources,
) -> None:
    snap = _compile(resources, _imports())
    web = snap.cluster_map()["default/web:80"]
    local, remote = web.endpoints
    assert (local.address, local.port, local.tls) == ("10.0.0.1", 8000, None)
    assert dict(local.labels)[CLUSTER_LABEL] == "east"
    assert (remote.address, remote.port, remote.region) == ("192.0.2.10", 15443, "us-west")
    assert dict(remote.labels)[CLUSTER_LABEL] == "west"
    assert remote.tls == UpstreamTls(
        sni="outbound_.80_._.web.default.svc.cluster.local",
        subject_alt_names=("spiffe://west.local/ns/default/*",),
    )
    assert web.tls is None  # the local endpoints are reached as before
    assert web.locality_lb == LocalityLb(failover_priority=(CLUSTER_LABEL,))


async def _picks(snap: Snapshot, cluster: str, n: int = 50) -> set[str]:
    manager = ClusterManager()
    manager.apply(snap.clusters, snap.limits, snap.node)
    try:
        upstream = manager.get(cluster)
        assert upstream is not None
        picked = {p.address for p in (upstream.pick(k) for k in range(n)) if p is not None}
    finally:
        manager.close()
    return picked


async def test_traffic_fails_over_to_the_remote_gateway_only_without_a_ready_local_endpoint(
    load_yaml: Callable[..., Resources],
) -> None:
    imports = _imports()
    ready = load_yaml(GATEWAY, ROUTE, WEB.replace("READY", "true"))
    assert await _picks(_compile(ready, imports), "default/web:80") == {"10.0.0.1"}
    unready = load_yaml(GATEWAY, ROUTE, WEB.replace("READY", "false"))
    assert await _picks(_compile(unready, imports), "default/web:80") == {"192.0.2.10"}


def test_a_backend_ref_to_a_service_only_other_clusters_have_reaches_them(
    resources: Resources,
) -> None:
    snap = _compile(resources, _imports())
    (listener,) = snap.ports[0].listeners
    (route,) = listener.http_routes
    assert [b.cluster for b in route.rules[0].backends] == ["default/api.clusterset:8080"]
    assert [b.cluster for b in route.rules[1].backends] == ["default/web:80"]
    assert "api.default.svc.clusterset.local" in route.hostnames
    assert not [u for u in snap.unresolved if u.target.startswith("Service default/api")]


def test_without_the_import_the_backend_ref_stays_unresolved(resources: Resources) -> None:
    snap = _compile(resources, keyed(imported("west", "web", 80)))
    (route,) = snap.ports[0].listeners[0].http_routes
    assert [b.cluster for b in route.rules[0].backends] == [""]
    (problem,) = [u for u in snap.unresolved if u.target.startswith("Service default/api")]
    assert problem.field == "spec.rules[0].backendRefs[0]"
    assert problem.reason == "Service not found"


def test_an_import_on_another_port_does_not_resolve_the_backend_ref(resources: Resources) -> None:
    snap = _compile(resources, keyed(imported("west", "api", 9999)))
    (route,) = snap.ports[0].listeners[0].http_routes
    assert route.rules[0].backends[0].cluster == ""


def test_without_imports_the_snapshot_is_the_local_compilation_plus_the_node(
    resources: Resources,
) -> None:
    from gateway.config.compile import compile_resources

    local = compile_resources(resources)
    snap = _compile(resources, {})
    assert snap.ports == local.ports and snap.clusters == local.clusters
    assert snap.node.cluster == "east"


def test_unknown_roles_are_refused(resources: Resources) -> None:
    with pytest.raises(ConfigError, match="waypoint role is not served"):
        compile_for(ProxyInfo(id="s", role="waypoint"), resources, {}, "east")


def test_a_local_configuration_error_propagates(load_yaml: Callable[..., Resources]) -> None:
    clash = GATEWAY.replace("name: gw", "name: other")
    with pytest.raises(ConfigError):
        compile_for(PROXY, load_yaml(GATEWAY, clash), {}, "east")


def test_endpoint_tls_survives_the_wire() -> None:
    endpoint = Endpoint(address="a", port=1, tls=UpstreamTls(sni="x"))
    assert msgspec.json.decode(msgspec.json.encode(endpoint), type=Endpoint) == endpoint


def test_a_compile_cache_reuses_unchanged_clusters_and_changes_nothing(
    load_yaml: Callable[..., Resources],
) -> None:
    other = WEB.replace("web", "other").replace("10.0.0.1", "10.0.9.9")
    first = load_yaml(GATEWAY, ROUTE, WEB.replace("READY", "true"), other.replace("READY", "true"))
    # The same objects but the web EndpointSlice, as a store hands them out after a change.
    changed_slice = load_yaml(WEB.replace("READY", "false")).of_kind(EndpointSlice)[0]
    second = Resources(
        tuple(changed_slice if o.name == "web-1" else o for o in first.objects), first.origins
    )
    cache = CompileCache()
    steps = [(first, _imports()), (second, _imports()),
             (second, {k: v for k, v in _imports().items() if k[2] != "api"})]  # fmt: skip
    built = []
    for resources, imports in steps:
        cached = compile_for(PROXY, resources, imports, "east", cache=cache)
        assert cached == compile_for(PROXY, resources, imports, "east")  # same content, version
        built.append(cached.cluster_map())
    # The unchanged Service's cluster and the unchanged import's cluster are reused as
    # they are; the changed ones are rebuilt.
    assert built[1]["default/other:80"] is built[0]["default/other:80"]
    assert built[1]["default/web:80"] is not built[0]["default/web:80"]
    assert not built[1]["default/web:80"].endpoints[0].ready
    assert built[2]["default/web.clusterset:80"] is built[1]["default/web.clusterset:80"]
    assert "default/api.clusterset:8080" not in built[2]
    assert cache.local.hits >= 2
