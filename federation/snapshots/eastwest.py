"""The east-west gateway's snapshot: SNI passthrough to the services this cluster exports.

Called by :func:`federation.snapshots.compile.compile_for` for proxies of the ``eastwest``
role. Other clusters reach an exported service at this cluster's east-west gateway (the
address and port its Consul node advertises) with Istio mutual TLS and the service's
AUTO_PASSTHROUGH SNI, ``outbound_.<port>_._.<name>.<namespace>.svc.<domain>``
(:func:`federation.model.service_sni`). The gateway never decrypts (DESIGN.md §1): it reads
the SNI from the ClientHello and pipes the connection to an endpoint of the local Service
port, whose sidecar terminates the mTLS session and checks the caller.

The snapshot therefore has one TLS port, ``0.0.0.0:<gateway port>``, with one listener whose
TLS routes map each exported Service port's SNI to that port's local cluster; a Service that
is not exported (no ``ServiceExport``) has no route, so its SNI gets the connection closed.
The clusters are the local ones, without the other clusters' gateways that the ingress's
clusters get appended for failover: traffic that entered through this gateway stays here.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from federation.model import ExportedService, service_sni
from gateway.config.clusters import cluster_name
from gateway.config.snapshot import (
    Cluster,
    Listener,
    Node,
    PortBinding,
    Snapshot,
    TLSRouteConfig,
    WeightedBackend,
)

GATEWAY_NAME = "isthmus-eastwest"
LISTENER_NAME = "auto-passthrough"


def eastwest_snapshot(
    base: Snapshot,
    exports: Iterable[ExportedService],
    node: Node,
    *,
    gateway_port: int,
    dns_domain: str,
) -> Snapshot:
    """``base`` (the cluster's compiled configuration) as the east-west gateway runs it."""
    clusters = {c.name: c for c in base.clusters}
    routes = tuple(
        route
        for export in sorted(exports, key=lambda e: (e.namespace, e.name))
        for route in _routes(export, clusters, dns_domain)
    )
    listener = Listener(
        gateway=GATEWAY_NAME,
        name=LISTENER_NAME,
        port=gateway_port,
        protocol="TLS",
        tls_routes=routes,
    )
    binding = PortBinding(
        address="0.0.0.0", port=gateway_port, protocol="TLS", listeners=(listener,)
    )
    return msgspec.structs.replace(
        base,
        ports=(binding,),
        node=node,
        unresolved=(),
    )


def _routes(
    export: ExportedService, clusters: dict[str, Cluster], domain: str
) -> Iterable[TLSRouteConfig]:
    for port in export.ports:
        target = cluster_name(export.namespace, export.name, port.port)
        if target not in clusters:
            continue
        yield TLSRouteConfig(
            namespace=export.namespace,
            name=f"{export.name}-{port.port}",
            hostnames=(service_sni(export.namespace, export.name, port.port, domain),),
            backends=(WeightedBackend(cluster=target, weight=1),),
        )
