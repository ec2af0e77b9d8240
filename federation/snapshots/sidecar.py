"""A sidecar's snapshot from the federation controller.

Called by :func:`federation.snapshots.compile.compile_for` for proxies of the ``sidecar``
role. The sidecar says who it is when it polls (namespace, workload, labels) and where it
listens (``inbound``, ``app`` and ``outbound``, ``HOST:PORT`` each); the snapshot is then the
one ``gateway.config.sidecar.compile_sidecar`` makes from the cluster's objects for that
workload (its PeerAuthentication mode, the AuthorizationPolicies that select it, the mesh
clusters of every Service), with the node built from what the sidecar said and the
controller's cluster and trust domain, plus what other clusters export:

- the clusterset clusters (``<ns>/<name>.clusterset:<port>``, as the ingress gets them) and,
  on the outbound port, the route from ``<name>.<ns>.svc.clusterset.local`` to them (a
  ``<host>:<port>`` Host picks the port, as for local Services);
- on a local Service's mesh clusters, the other exporting clusters' gateways as failover
  endpoints (``compile_for`` appends them, as for the ingress).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from federation.snapshots.clustersets import (
    CLUSTER_LABEL,
    Groups,
    clusterset_cluster_name,
    ports_of,
)
from gateway.config.errors import ConfigError, Problem
from gateway.config.sidecar import OUTBOUND, SidecarPorts, outbound_route
from gateway.config.snapshot import HTTPRouteConfig, Listener, Node, PortBinding, Snapshot

CLUSTERSET_SUFFIX = "svc.clusterset.local"


def sidecar_ports(proxy_id: str, inbound: str, app: str, outbound: str) -> SidecarPorts:
    """The sidecar's ports as it reported them; ConfigError when one is missing or bad."""
    found: list[tuple[str, int]] = []
    for name, value in (("inbound", inbound), ("app", app), ("outbound", outbound)):
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError([Problem(f"proxy {proxy_id}",
                                       f"a sidecar must say its {name} address as HOST:PORT "
                                       f"(got {value!r})")])  # fmt: skip
        found.append((host.strip("[]"), int(port)))
    (in_host, in_port), (app_host, app_port), (out_host, out_port) = found
    return SidecarPorts(
        inbound_port=in_port,
        app_port=app_port,
        outbound_port=out_port,
        inbound_address=in_host,
        outbound_address=out_host,
        app_address=app_host,
    )


def sidecar_node(
    namespace: str, workload: str, labels: Iterable[tuple[str, str]], cluster: str, domain: str
) -> Node:
    """The node of a sidecar: what it said, in this cluster and trust domain."""
    kept = [(k, v) for k, v in labels if k != CLUSTER_LABEL]
    return Node(
        workload=workload,
        namespace=namespace,
        cluster=cluster,
        trust_domain=domain,
        labels=tuple(sorted([*kept, (CLUSTER_LABEL, cluster)])),
    )


def with_clusterset_routes(snapshot: Snapshot, remote: Groups) -> Snapshot:
    """``snapshot`` with the outbound routes to the clusterset clusters of ``remote``."""
    routes = tuple(
        _clusterset_route(namespace, name, [p.port for p in ports_of(exporters)])
        for (namespace, name), exporters in sorted(remote.items())
    )
    if not routes:
        return snapshot
    ports = tuple(_with_routes(b, routes) for b in snapshot.ports)
    return msgspec.structs.replace(snapshot, ports=ports)


def _clusterset_route(namespace: str, name: str, ports: list[int]) -> HTTPRouteConfig:
    def cluster_of(number: int) -> str:
        return clusterset_cluster_name(namespace, name, number)

    return outbound_route(
        namespace,
        name,
        (f"{name}.{namespace}.{CLUSTERSET_SUFFIX}",),
        ports,
        cluster_of,
        route_name=f"{OUTBOUND}-{name}.clusterset",
    )


def _with_routes(binding: PortBinding, routes: tuple[HTTPRouteConfig, ...]) -> PortBinding:
    listeners = tuple(
        _listener_with(listener, routes) if listener.name == OUTBOUND else listener
        for listener in binding.listeners
    )
    return msgspec.structs.replace(binding, listeners=listeners)


def _listener_with(listener: Listener, routes: tuple[HTTPRouteConfig, ...]) -> Listener:
    return msgspec.structs.replace(listener, http_routes=listener.http_routes + routes)
