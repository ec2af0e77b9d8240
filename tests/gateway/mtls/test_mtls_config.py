"""Configuration for mTLS: PeerAuthentication (validation and Istio's resolution), the
DestinationRule ``tls`` subset, and the sidecar compile step."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway.config.compile import compile_resources
from gateway.config.errors import ConfigError
from gateway.config.kinds import Service
from gateway.config.loader import load_directory
from gateway.config.sidecar import SidecarPorts, compile_sidecar, endpoint_identities
from gateway.config.snapshot import Cluster, Endpoint, Node, Snapshot
from tests.gateway.mtls.mtls_support import (
    destination_rule,
    peer_authentication,
    proxy_settings,
    service,
    sidecar_dir,
)

PORTS = SidecarPorts(inbound_port=15006, app_port=8080, outbound_port=15001)


def sidecar_snapshot(tmp_path: Path, *docs: str, labels: str = "app: web") -> Snapshot:
    label_map = dict(part.split(": ") for part in labels.split(", ")) if labels else {}
    cfg = sidecar_dir(tmp_path / "cfg", proxy_settings("shop", "web", label_map), *docs)
    return compile_sidecar(load_directory(cfg), PORTS)


def inbound_mode(snapshot: Snapshot) -> str | None:
    (binding,) = [p for p in snapshot.ports if p.port == PORTS.inbound_port]
    return binding.mtls


PORT_LEVEL = "  portLevelMtls:\n    8080: {mode: DISABLE}\n"

RESOLUTION = [
    ("no policy: PERMISSIVE", [], "PERMISSIVE"),
    ("mesh STRICT", [peer_authentication("m", "istio-system", "STRICT")], "STRICT"),
    (
        "namespace overrides mesh",
        [
            peer_authentication("m", "istio-system", "STRICT"),
            peer_authentication("n", "shop", "PERMISSIVE"),
        ],
        "PERMISSIVE",
    ),
    (
        "UNSET inherits",
        [
            peer_authentication("m", "istio-system", "STRICT"),
            peer_authentication("n", "shop", "UNSET"),
        ],
        "STRICT",
    ),
    (
        "workload overrides namespace",
        [
            peer_authentication("n", "shop", "STRICT"),
            peer_authentication("w", "shop", "DISABLE", selector="app: web"),
        ],
        None,
    ),
    (
        "selector that does not match",
        [peer_authentication("w", "shop", "STRICT", selector="app: cart")],
        "PERMISSIVE",
    ),
    (
        "another namespace does not apply",
        [peer_authentication("n", "billing", "STRICT")],
        "PERMISSIVE",
    ),
    (
        "port level wins for the app port",
        [peer_authentication("w", "shop", "STRICT", selector="app: web", extra=PORT_LEVEL)],
        None,
    ),
]


@pytest.mark.parametrize(("docs", "mode"), [(d, m) for _, d, m in RESOLUTION],
                         ids=[name for name, _, _ in RESOLUTION])  # fmt: skip
def test_peer_authentication_resolution(tmp_path: Path, docs: list[str], mode: str | None) -> None:
    assert inbound_mode(sidecar_snapshot(tmp_path, *docs)) == mode


@pytest.mark.parametrize(
    ("doc", "path", "message"),
    [
        (peer_authentication("p", "shop", "STRICT", extra=PORT_LEVEL), "spec.portLevelMtls",
         "needs a selector"),
        (peer_authentication("p", "shop", "STRICTER"), "spec.mtls.mode", "expected one of"),
        (peer_authentication("p", "shop", "STRICT", selector="app: web",
                             extra="  portLevelMtls:\n    0: {mode: STRICT}\n"),
         "spec.portLevelMtls", "not a port number"),
        (peer_authentication("p", "shop", "STRICT", selector="app: web",
                             extra="  portLevelMtls:\n    80: {mode: LOUD}\n"),
         "spec.portLevelMtls", "expected one of"),
        (peer_authentication("p", "shop", "STRICT", extra="  trustDomain: x\n"),
         "spec.trustDomain", "unknown field"),
    ],
)  # fmt: skip
def test_peer_authentication_is_validated(
    tmp_path: Path, doc: str, path: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        sidecar_snapshot(tmp_path, doc)
    problems = info.value.problems
    assert any(p.path.startswith(path) and message in p.message for p in problems), problems


def test_ingress_listeners_are_not_changed_by_peer_authentication(tmp_path: Path) -> None:
    cfg = sidecar_dir(tmp_path / "cfg", peer_authentication("m", "istio-system", "STRICT"))
    snapshot = compile_resources(load_directory(cfg))
    assert all(p.mtls is None for p in snapshot.ports)


@pytest.mark.parametrize(
    ("tls", "path", "message"),
    [
        ("{mode: MUTUAL, caCertificates: x}", "spec.trafficPolicy.tls", "clientCertificate"),
        ("{mode: SIMPLE, caCertificates: /etc/ca.pem}", "spec.trafficPolicy.tls.caCertificates",
         "inline PEM"),
        ("{mode: ISTIO_MUTUAL, caCertificates: x}", "spec.trafficPolicy.tls.caCertificates",
         "must not be set"),
        ("{mode: SIMPLE, credentialName: c}", "spec.trafficPolicy.tls.credentialName",
         "not supported"),
        ("{mode: SIMPLE, insecureSkipVerify: true}", "spec.trafficPolicy.tls.insecureSkipVerify",
         "not supported"),
    ],
)  # fmt: skip
def test_destination_rule_tls_is_validated(
    tmp_path: Path, tls: str, path: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        sidecar_snapshot(tmp_path, service("web", "shop", 9000),
                         destination_rule("d", "shop", "web", tls))  # fmt: skip
    assert any(p.path == path and message in p.message for p in info.value.problems), (
        info.value.problems
    )


def test_sidecar_outbound_clusters_use_istio_mutual_over_h2(tmp_path: Path) -> None:
    snapshot = sidecar_snapshot(
        tmp_path,
        service("web", "shop", 9000),
        service("plain", "shop", 9001),
        destination_rule("d", "shop", "plain", "{mode: DISABLE}"),
    )
    clusters = snapshot.cluster_map()
    web = clusters["shop/web:80"]
    assert web.protocol == "h2c"
    assert web.tls is not None and web.tls.mode == "ISTIO_MUTUAL"
    assert web.tls.sni == "outbound_.80_._.web.shop.svc.cluster.local"
    plain = clusters["shop/plain:80"]
    assert plain.tls is None and plain.protocol == "http1"
    inbound = clusters["inbound|8080||"]
    assert [(e.address, e.port) for e in inbound.endpoints] == [("127.0.0.1", 8080)]
    (outbound,) = [p for p in snapshot.ports if p.port == PORTS.outbound_port]
    assert outbound.mtls is None and outbound.address == "127.0.0.1"
    (listener,) = outbound.listeners
    hosts = {r.name: r.hostnames for r in listener.http_routes}
    assert hosts["outbound-web"] == (
        "web.shop.svc.cluster.local", "web.shop.svc", "web.shop", "web"
    )  # fmt: skip


def test_expected_identities_come_from_endpoint_service_accounts(tmp_path: Path) -> None:
    cfg = sidecar_dir(tmp_path / "svc", service("web", "shop", 9000))
    (svc,) = load_directory(cfg).of_kind(Service)
    node = Node(trust_domain="mesh.test")
    cluster = Cluster(
        name="shop/web:80",
        endpoints=(
            Endpoint(address="10.0.0.1", port=15006, service_account="web"),
            Endpoint(address="10.0.0.2", port=15006, service_account="web-canary"),
        ),
    )
    assert endpoint_identities(cluster, svc, node) == (
        "spiffe://mesh.test/ns/shop/sa/web", "spiffe://mesh.test/ns/shop/sa/web-canary"
    )  # fmt: skip
    # One endpoint of unknown identity: no list (any identity of the trust domain).
    partial = msgspec.structs.replace(
        cluster, endpoints=(*cluster.endpoints, Endpoint(address="10.0.0.3", port=15006))
    )
    assert endpoint_identities(partial, svc, node) == ()


def test_subject_alt_names_of_the_destination_rule_win(tmp_path: Path) -> None:
    snapshot = sidecar_snapshot(
        tmp_path,
        service("web", "shop", 9000),
        destination_rule("d", "shop", "web",
                         '{mode: ISTIO_MUTUAL, subjectAltNames: ["spiffe://mesh.test/ns/x/sa/y"]}'),
    )  # fmt: skip
    tls = snapshot.cluster_map()["shop/web:80"].tls
    assert tls is not None and tls.subject_alt_names == ("spiffe://mesh.test/ns/x/sa/y",)
