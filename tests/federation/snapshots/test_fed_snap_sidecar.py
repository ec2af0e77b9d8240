"""A sidecar's snapshot from the controller (``federation.snapshots.sidecar``): the sidecar
compile step for the workload the sidecar reports, plus the other clusters' services."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from federation.snapshots.compile import ProxyInfo, compile_for
from gateway.config.errors import ConfigError
from gateway.config.resources import Resources
from tests.federation.snapshots.fed_snap_helpers import imported, keyed
from tests.federation.snapshots.test_fed_snap_compile import WEB

PEER_AUTH = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict-web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  mtls: {mode: STRICT}
"""


def sidecar(**labels: str) -> ProxyInfo:
    return ProxyInfo(id="web-1", role="sidecar", namespace="default", workload="web",
                     labels=tuple(sorted(labels.items())), inbound="0.0.0.0:15006",
                     app="127.0.0.1:8000", outbound="127.0.0.1:15001")  # fmt: skip


@pytest.fixture
def resources(load_yaml: Callable[..., Resources]) -> Resources:
    return load_yaml(WEB.replace("READY", "true"), PEER_AUTH)


def test_the_sidecar_gets_its_listeners_for_what_it_reports(resources: Resources) -> None:
    snap = compile_for(sidecar(app="web"), resources, {}, "east", trust_domain="mesh.test")
    inbound, outbound = snap.ports
    assert (inbound.address, inbound.port, inbound.mtls) == ("0.0.0.0", 15006, "STRICT")
    assert (outbound.address, outbound.port) == ("127.0.0.1", 15001)
    clusters = snap.cluster_map()
    assert clusters["inbound|8000||"].endpoints[0].port == 8000
    assert clusters["default/web:80"].tls is not None
    assert clusters["default/web:80"].tls.mode == "ISTIO_MUTUAL"
    node = snap.node
    assert (node.workload, node.namespace, node.cluster, node.trust_domain) == (
        "web", "default", "east", "mesh.test")  # fmt: skip
    assert ("app", "web") in node.labels and ("topology.istio.io/cluster", "east") in node.labels
    # Another workload's labels: the PeerAuthentication does not select it.
    other = compile_for(sidecar(app="cart"), resources, {}, "east")
    assert other.ports[0].mtls == "PERMISSIVE"


def test_imported_services_get_clusterset_routes_and_failover(resources: Resources) -> None:
    imports = keyed(imported("west", "api", 8080, 9090, address="192.0.2.10"),
                    imported("west", "web", 80, address="192.0.2.10"))  # fmt: skip
    snap = compile_for(sidecar(app="web"), resources, imports, "east")
    clusters = snap.cluster_map()
    assert {"default/api.clusterset:8080", "default/api.clusterset:9090"} <= set(clusters)
    routes = {r.name: r for r in snap.ports[1].listeners[0].http_routes}
    api = routes["outbound-api.clusterset"]
    assert api.hostnames == ("api.default.svc.clusterset.local",)
    assert [b.cluster for rule in api.rules for b in rule.backends] == [
        "default/api.clusterset:9090", "default/api.clusterset:8080"]  # fmt: skip
    # The local web also exists in west: its mesh cluster gets west's gateway for failover.
    web = clusters["default/web:80"]
    assert [e.address for e in web.endpoints] == ["10.0.0.1", "192.0.2.10"]
    assert web.endpoints[1].tls is not None and web.endpoints[1].tls.sni == (
        "outbound_.80_._.web.default.svc.cluster.local")  # fmt: skip


@pytest.mark.parametrize("field", ["inbound", "app", "outbound"])
def test_a_sidecar_without_its_ports_does_not_compile(resources: Resources, field: str) -> None:
    import msgspec

    broken = msgspec.structs.replace(sidecar(), **{field: ""})
    with pytest.raises(ConfigError, match=f"its {field} address as HOST:PORT"):
        compile_for(broken, resources, {}, "east")
