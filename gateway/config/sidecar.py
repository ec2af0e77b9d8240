"""Compile a sidecar's snapshot: an inbound and an outbound listener over the mesh's Services.

Called by the sidecar role (``gateway.roles.sidecar``) on every load of its configuration
directory, in place of ``gateway.config.compile`` (the ingress compile step). Explicit ports,
no iptables (DESIGN.md §4):

- **Inbound** (``inbound_address:inbound_port``): the port peers reach. Its mTLS mode comes
  from the PeerAuthentications that apply to this workload (``ProxySettings`` ``node``) for
  the workload port ``app_port`` (PERMISSIVE when none applies); the AuthorizationPolicies and
  RequestAuthentications that select the workload run on it (``gateway.config.security``);
  every request then goes to the local app, cluster ``inbound|<app_port>||`` at
  ``app_address:app_port``, HTTP/1.1 unless a local Service port targeting ``app_port`` has an
  HTTP/2 ``appProtocol``.
- **Outbound** (``outbound_address:outbound_port``): plain HTTP from the app. The Host picks a
  Service by its Kubernetes names: ``<svc>`` (in the workload's namespace only),
  ``<svc>.<ns>``, ``<svc>.<ns>.svc`` and ``<svc>.<ns>.svc.cluster.local``. A Service with
  several ports is told apart by the HTTP/1.1 Host header's port; without one (or with
  HTTP/2 from the app) the Service's port 80 is used, else its first port. Unknown hosts
  get 404 (``NR``).
- **Outbound clusters** are the Services' clusters (``<ns>/<svc>:<port>``, with their
  DestinationRules). Unless a DestinationRule sets ``tls``, they use ISTIO_MUTUAL towards
  the endpoints, over HTTP/2 (ALPN ``h2`` between proxies), with Istio's SNI
  ``outbound_.<port>_._.<host>`` and, when every endpoint's service account is known, the
  SPIFFE IDs those accounts give as the identities the server may have. With explicit ports
  an EndpointSlice of a meshed workload lists the address and **inbound port** of its
  sidecar. A DestinationRule ``tls`` with ISTIO_MUTUAL also gets HTTP/2; DISABLE, SIMPLE and
  MUTUAL keep the Service's protocol (the peer is not a sidecar).

Gateways and routes are not read: they configure gateways, not sidecars.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from gateway.config.clusters import build_clusters, cluster_name, upstream_protocol
from gateway.config.kinds import (
    DestinationRule,
    EndpointSlice,
    PeerAuthentication,
    ProxySettings,
    Service,
)
from gateway.config.kinds.core import ServicePort
from gateway.config.kinds.peerauthentication import effective_mode
from gateway.config.resources import Resources
from gateway.config.security import apply_security
from gateway.config.snapshot import (
    Cluster,
    Endpoint,
    HeaderMatch,
    HTTPRouteConfig,
    Limits,
    Listener,
    Node,
    PortBinding,
    RouteMatch,
    RouteRule,
    Snapshot,
    Telemetry,
    UpstreamProtocol,
    UpstreamTls,
    WeightedBackend,
)
from gateway.config.traffic_policy import DOMAIN_SUFFIX, TrafficPolicies

INBOUND = "inbound"
OUTBOUND = "outbound"


@dataclass(frozen=True, slots=True)
class SidecarPorts:
    """Where the sidecar listens and where its app is. Ports are TCP port numbers."""

    inbound_port: int
    app_port: int
    outbound_port: int
    inbound_address: str = "0.0.0.0"
    outbound_address: str = "127.0.0.1"
    app_address: str = "127.0.0.1"


def inbound_cluster_name(app_port: int) -> str:
    """Istio's name for the cluster of the local app."""
    return f"inbound|{app_port}||"


def mesh_sni(service: Service, port: int) -> str:
    """Istio's AUTO_PASSTHROUGH SNI (identity.md): ``outbound_.<port>_._.<host>``."""
    return f"outbound_.{port}_._.{service.name}.{service.namespace}.svc.{DOMAIN_SUFFIX}"


def compile_sidecar(
    resources: Resources, ports: SidecarPorts, node: Node | None = None, *, versioned: bool = True
) -> Snapshot:
    """The sidecar snapshot of ``resources`` (see the module docstring), version set unless
    ``versioned`` is false. ``node``: who the sidecar is, when it says so itself (a sidecar of
    the federation controller); otherwise the ``ProxySettings`` ``node``."""
    settings = resources.of_kind(ProxySettings)
    if node is None:
        node = settings[0].node() if settings else Node()
    services = resources.of_kind(Service)
    policies = TrafficPolicies.of(services, resources.of_kind(DestinationRule), node.namespace)
    clusters = {c.name: c for c in build_clusters(services, resources.of_kind(EndpointSlice),
                                                   policies)}  # fmt: skip
    for service in services:
        for port in service.spec.ports:
            name = cluster_name(service.namespace, service.name, port.port)
            clusters[name] = _mesh_cluster(clusters[name], service, port.port, policies, node)
    inbound = inbound_cluster_name(ports.app_port)
    clusters[inbound] = Cluster(
        name=inbound,
        protocol=_app_protocol(services, node, ports.app_port),
        endpoints=(Endpoint(address=ports.app_address, port=ports.app_port),),
    )
    inbound_binding = PortBinding(
        address=ports.inbound_address,
        port=ports.inbound_port,
        protocol="HTTP",
        listeners=(_inbound_listener(ports, inbound, node),),
        mtls=effective_mode(resources.of_kind(PeerAuthentication), node, ports.app_port),
    )
    (inbound_binding,) = apply_security([inbound_binding], resources, node)
    outbound_binding = PortBinding(
        address=ports.outbound_address,
        port=ports.outbound_port,
        protocol="HTTP",
        listeners=(_outbound_listener(ports, services, node),),
    )
    snapshot = Snapshot(
        ports=(inbound_binding, outbound_binding),
        clusters=tuple(sorted(clusters.values(), key=lambda c: c.name)),
        limits=settings[0].limits() if settings else Limits(),
        node=node,
        telemetry=settings[0].telemetry() if settings else Telemetry(),
        unresolved=tuple(
            sorted(policies.unresolved, key=lambda u: (u.source, u.field, u.target, u.reason))
        ),
    )
    return snapshot.with_version() if versioned else snapshot


def _mesh_cluster(
    cluster: Cluster, service: Service, port: int, policies: TrafficPolicies, node: Node
) -> Cluster:
    tls = cluster.tls
    if not policies.sets_tls(service, port):
        tls = UpstreamTls(mode="ISTIO_MUTUAL")
    if tls is None or tls.mode != "ISTIO_MUTUAL":
        return cluster
    sans = tls.subject_alt_names or endpoint_identities(cluster, service, node)
    tls = msgspec.structs.replace(
        tls, sni=tls.sni or mesh_sni(service, port), subject_alt_names=sans
    )
    return msgspec.structs.replace(cluster, tls=tls, protocol="h2c")


def endpoint_identities(cluster: Cluster, service: Service, node: Node) -> tuple[str, ...]:
    """The SPIFFE IDs of the endpoints' service accounts, when every one is known."""
    accounts = [ep.service_account for ep in cluster.endpoints]
    if not accounts or any(a is None for a in accounts):
        return ()
    return tuple(
        sorted({f"spiffe://{node.trust_domain}/ns/{service.namespace}/sa/{a}" for a in accounts})
    )


def _app_protocol(services: tuple[Service, ...], node: Node, app_port: int) -> UpstreamProtocol:
    for service in services:
        if service.namespace != node.namespace:
            continue
        for port in service.spec.ports:
            if _targets(port, app_port):
                return upstream_protocol(port.app_protocol)
    return "http1"


def _targets(port: ServicePort, app_port: int) -> bool:
    target = port.target_port
    return (target if isinstance(target, int) else port.port) == app_port


def _inbound_listener(ports: SidecarPorts, cluster: str, node: Node) -> Listener:
    route = HTTPRouteConfig(
        kind="HTTPRoute",
        namespace=node.namespace,
        name=INBOUND,
        rules=(RouteRule(backends=(WeightedBackend(cluster=cluster),)),),
    )
    return Listener(
        gateway="", name=INBOUND, port=ports.inbound_port, protocol="HTTP", http_routes=(route,)
    )


def _outbound_listener(ports: SidecarPorts, services: tuple[Service, ...], node: Node) -> Listener:
    routes = tuple(_service_route(service, node) for service in services if service.spec.ports)
    return Listener(
        gateway="", name=OUTBOUND, port=ports.outbound_port, protocol="HTTP", http_routes=routes
    )


def service_hostnames(service: Service, node: Node) -> tuple[str, ...]:
    """The names the app may use for ``service`` (Kubernetes DNS and its search path)."""
    full = f"{service.name}.{service.namespace}"
    names = [f"{full}.svc.{DOMAIN_SUFFIX}", f"{full}.svc", full]
    if service.namespace == node.namespace:
        names.append(service.name)
    return tuple(names)


def _service_route(service: Service, node: Node) -> HTTPRouteConfig:
    return outbound_route(
        service.namespace,
        service.name,
        service_hostnames(service, node),
        [p.port for p in service.spec.ports],
        lambda number: cluster_name(service.namespace, service.name, number),
    )


def outbound_route(
    namespace: str,
    name: str,
    hostnames: tuple[str, ...],
    service_ports: list[int],
    cluster_of: Callable[[int], str],
    *,
    route_name: str | None = None,
) -> HTTPRouteConfig:
    """The outbound route of one Service: ``hostnames`` to the cluster of the port the Host
    header names (HTTP/1.1 ``<host>:<port>``), else of port 80, else of the first port."""
    default = 80 if 80 in service_ports else service_ports[0]
    rules = []
    for number in service_ports:
        if number == default:
            continue
        # Host "<name>:<port>" (HTTP/1.1): the port names the Service port.
        host_port = HeaderMatch(name="host", value=rf"[^:]+:{number}", type="RegularExpression")
        rules.append(
            RouteRule(
                matches=(RouteMatch(headers=(host_port,)),),
                backends=(WeightedBackend(cluster=cluster_of(number)),),
            )
        )
    rules.append(RouteRule(backends=(WeightedBackend(cluster=cluster_of(default)),)))
    return HTTPRouteConfig(
        kind="HTTPRoute",
        namespace=namespace,
        name=route_name or f"{OUTBOUND}-{name}",
        hostnames=hostnames,
        rules=tuple(rules),
    )
