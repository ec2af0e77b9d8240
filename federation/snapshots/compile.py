"""Compile one proxy's snapshot from the cluster's objects and the imported services.

Called by :class:`federation.snapshots.hub.SnapshotHub` whenever its inputs change. Pure and
deterministic: the same inputs give the same snapshot and so the same version hash (imports
are sorted, never read in mapping order).

**Local configuration.** For the ``ingress`` role the cluster's Gateway API objects compile
exactly as ``isthmus gateway run --config`` compiles them
(:func:`gateway.config.compile.compile_resources`); a ``ConfigError`` from it propagates. The
node's ``cluster`` becomes this cluster's name, and the node carries the label
``topology.istio.io/cluster=<cluster>``. The ``eastwest`` role gets the same clusters behind
an SNI passthrough port (:mod:`federation.snapshots.eastwest`); the ``sidecar`` role gets its
inbound and outbound listeners (:mod:`federation.snapshots.sidecar`), with the imported
services and failover below as the ingress has them.

**Imported services** (:class:`federation.model.ImportedService`, one per exporting cluster):

- every port of ``<ns>/<name>`` exported by any other cluster becomes the cluster
  ``<ns>/<name>.clusterset:<port>`` (:func:`clusterset_cluster_name`): the local naming
  ``<ns>/<name>:<port>`` with ``.clusterset`` after the service name (as in the MCS host
  ``<name>.<ns>.svc.clusterset.local``); a Service name is a DNS label without dots, so it
  never collides with a local Service's cluster;
- its endpoints are the exporting clusters' east-west gateways, one per exporting cluster,
  sorted by cluster name, with that cluster's locality (``isthmus-locality``) and the label
  ``topology.istio.io/cluster=<exporting cluster>``. An endpoint is ready when the exporter's
  TTL check passes and it reports at least one ready endpoint;
- ``tls`` is Istio mutual TLS with the service's AUTO_PASSTHROUGH SNI
  (:func:`federation.model.service_sni`), verifying the peer against
  ``spiffe://<trust domain>/ns/<ns>/*`` for each exporter's trust domain (the service
  accounts behind a remote service are not published, so any identity of the namespace is
  accepted; the ``*`` suffix is Istio's prefix form, as in authorization principals);
- ``origin_cluster`` names the exporting clusters (comma-separated when several);
- locality-aware balancing is on (a default ``LocalityLb``), so the exporter in the proxy's
  own region is preferred and the others take over when its gateway is not ready.

**Failover of a local Service.** When a local Service is also exported by other clusters,
each of its clusters (one per port) gets those clusters' gateways appended as extra
endpoints, each with its own ``tls`` (the mTLS settings above: the local endpoints stay as
they are) and its cluster's locality. All endpoints carry the ``topology.istio.io/cluster``
label, and when no DestinationRule sets ``localityLbSetting`` the cluster gets
``failoverPriority: [topology.istio.io/cluster]``: local endpoints form priority 0, remote
ones priority 1 (Istio's recipe for cross-cluster failover). ``gateway.upstream.locality``
then keeps all traffic local while enough local endpoints are healthy: an endpoint that is
not ready does not count at all, so with no ready local endpoint everything goes to the
other clusters, and as ready local endpoints turn unhealthy (outlier detection or active
health checks, as in Istio) traffic spills over by Envoy's priority loads (overprovisioning
factor 1.4). A DestinationRule that sets its own ``localityLbSetting`` is kept as it is.

**Routes to imported services (the rule).** The compiler adds no routes of its own. A
``backendRef`` (HTTPRoute or GRPCRoute rule) to a Service ``<ns>/<name>`` port ``P`` that does
not exist locally, but that another cluster exports with port ``P``, resolves to
``<ns>/<name>.clusterset:P`` instead of being unresolved (ReferenceGrants apply as for a
local Service). So an HTTPRoute attached to a Gateway listener with ``hostnames:
[<name>.<ns>.svc.clusterset.local]`` and a backendRef to ``<name>`` is how
``Host: <name>.<ns>.svc.clusterset.local`` reaches the other clusters through the ingress;
when the Service exists locally the backendRef keeps resolving to the local cluster, which
fails over as above. Mirror filters and TLSRoutes are not redirected (an unresolved mirror
is dropped; passthrough cannot add the mesh's mTLS).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from federation.exports import exports_from
from federation.model import ImportedService
from federation.snapshots.clustersets import (
    CLUSTER_LABEL,
    Groups,
    ImportIndex,
    ImportKey,
    ServiceKey,
    by_name,
    clusterset_cluster_name,
    exporters_of,
    gateway_endpoint,
    mesh_tls,
    san,
)
from federation.snapshots.eastwest import eastwest_snapshot
from federation.snapshots.sidecar import sidecar_node, sidecar_ports, with_clusterset_routes
from gateway.config.clusters import ClusterMemo
from gateway.config.compile import compile_resources
from gateway.config.errors import ConfigError, Problem
from gateway.config.kinds import GRPCRoute, HTTPRoute
from gateway.config.kinds.route_parts import BackendRef
from gateway.config.refs import Resolver
from gateway.config.resources import Resources, key_of
from gateway.config.schema import item, join
from gateway.config.sidecar import compile_sidecar
from gateway.config.snapshot import (
    Cluster,
    HTTPRouteConfig,
    Listener,
    LocalityLb,
    Node,
    PortBinding,
    RouteRule,
    Snapshot,
    UnresolvedRef,
    WeightedBackend,
)

ROLES = ("ingress", "eastwest", "sidecar")

Obj = dict[str, Any]


class ProxyInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Who asks for a snapshot: the proxy's id (unique per proxy), its role, and where it
    runs. A sidecar also says where it listens and where its app is (``HOST:PORT`` each).
    Proxies that differ only by ``id`` get the same snapshot."""

    id: str
    role: str = "ingress"
    namespace: str = "default"
    workload: str = "isthmus-ingress"
    labels: tuple[tuple[str, str], ...] = ()
    inbound: str = ""
    app: str = ""
    outbound: str = ""

    def shape(self) -> ProxyInfo:
        """What the snapshot depends on (everything but the id)."""
        return msgspec.structs.replace(self, id="")


class CompileCache:
    """What one compilation can reuse from the previous one: the local clusters of
    unchanged Services (``ClusterMemo``), the imports grouped by service with their
    clusterset clusters (``ImportIndex``), and each local cluster's failover endpoints while
    neither it nor the imports of its Service changed. The hub keeps one; :func:`compile_for`
    makes a fresh one when given none, and gives the same snapshot either way."""

    def __init__(self) -> None:
        self.local = ClusterMemo()
        self.imports: ImportIndex | None = None
        # id(local cluster) -> (local cluster, its service, the group it saw, node cluster,
        # domain, result)
        self._failover: dict[int, _FailoverEntry] = {}
        self._failover_used: dict[int, _FailoverEntry] = {}

    def index(self, cluster: str, domain: str) -> ImportIndex:
        found = self.imports
        if found is None or found.cluster != cluster or found.domain != domain:
            found = self.imports = ImportIndex(cluster, domain)
        return found

    def with_failover(
        self, local: Cluster, remote: Groups, node: Node, here: str, domain: str
    ) -> Cluster:
        """:func:`_with_failover`, remembered. ``here``: ``node``'s cluster label."""
        entry = self._failover.get(id(local))
        if (
            entry is not None
            and entry[0] is local
            and remote.get(entry[1]) is entry[2]
            and entry[3] == here
            and entry[4] == domain
        ):
            self._failover_used[id(local)] = entry
            return entry[5]
        parsed = _split_cluster_name(local.name)
        service = (parsed[0], parsed[1]) if parsed is not None else ("", "")
        result = _with_failover(local, remote, node, domain)
        self._failover_used[id(local)] = (local, service, remote.get(service), here, domain, result)
        return result

    def done(self) -> None:
        """End of a compilation: forget the local clusters it did not use."""
        self._failover, self._failover_used = self._failover_used, {}


_FailoverEntry = tuple[Cluster, ServiceKey, "list[ImportedService] | None", str, str, Cluster]


def compile_for(
    proxy: ProxyInfo,
    resources: Resources,
    imports: Mapping[ImportKey, ImportedService],
    cluster: str,
    *,
    dns_domain: str = "cluster.local",
    versioned: bool = True,
    cache: CompileCache | None = None,
    service_exports: Sequence[Obj] = (),
    gateway_port: int = 15443,
    trust_domain: str = "cluster.local",
) -> Snapshot:
    """The snapshot of ``proxy`` in ``cluster``. Raises :class:`ConfigError` when the local
    configuration does not compile or the role is not served. ``versioned=False`` leaves
    the version empty, for a caller that versions it itself (the hub, which reuses the
    previous snapshot's cluster digests). ``cache``: what an earlier compilation built and
    this one may reuse (the result is the same with or without it). ``service_exports``
    (the cluster's ``ServiceExport`` objects) and ``gateway_port`` make the ``eastwest``
    role's snapshot (:mod:`federation.snapshots.eastwest`); ``trust_domain`` is the
    cluster's, for the ``sidecar`` role (:mod:`federation.snapshots.sidecar`)."""
    if proxy.role not in ROLES:
        raise ConfigError(
            [Problem(f"proxy {proxy.id}", f"the {proxy.role} role is not served by the controller")]
        )
    if cache is None:
        cache = CompileCache()  # nothing to reuse: the same steps, from scratch
    if proxy.role == "sidecar":
        ports = sidecar_ports(proxy.id or proxy.workload, proxy.inbound, proxy.app, proxy.outbound)
        node = sidecar_node(proxy.namespace, proxy.workload, proxy.labels, cluster, trust_domain)
        base = compile_sidecar(resources, ports, node, versioned=False)
    else:
        base = compile_resources(resources, versioned=False, memo=cache.local)
        node = _node(base.node, cluster)
    if proxy.role == "eastwest":
        own = msgspec.structs.replace(node, workload=proxy.workload, namespace=proxy.namespace)
        snapshot = eastwest_snapshot(
            base,
            exports_from(service_exports, resources),
            own,
            gateway_port=gateway_port,
            dns_domain=dns_domain,
        )
        return snapshot.with_version() if versioned else snapshot
    index = cache.index(cluster, dns_domain)
    index.update(imports)
    remote: Groups = index.groups
    here = dict(node.labels)[CLUSTER_LABEL]
    clusters = [cache.with_failover(c, remote, node, here, dns_domain) for c in base.clusters]
    cache.done()
    clustersets = index.clusters
    clusters.extend(clustersets)
    if proxy.role == "sidecar":
        base = with_clusterset_routes(base, remote)
        bindings, unresolved = base.ports, base.unresolved
    else:
        bindings, unresolved = _redirect_backends(base, resources, remote)
    snapshot = msgspec.structs.replace(
        base,
        ports=bindings,
        clusters=tuple(sorted(clusters, key=by_name)),
        node=node,
        unresolved=unresolved,
    )
    return snapshot.with_version() if versioned else snapshot


# --- local Services that other clusters export too -----------------------------------------


def _split_cluster_name(name: str) -> tuple[str, str, int] | None:
    namespace, slash, rest = name.partition("/")
    service, colon, port = rest.rpartition(":")
    if not slash or not colon or not port.isdigit():
        return None
    return namespace, service, int(port)


def _with_label(labels: tuple[tuple[str, str], ...], value: str) -> tuple[tuple[str, str], ...]:
    kept = [(k, v) for k, v in labels if k != CLUSTER_LABEL]
    return tuple(sorted([*kept, (CLUSTER_LABEL, value)]))


def _with_failover(
    local: Cluster,
    remote: Groups,
    node: Node,
    domain: str,
) -> Cluster:
    parsed = _split_cluster_name(local.name)
    if parsed is None:
        return local
    namespace, name, port = parsed
    exporters = exporters_of(remote.get((namespace, name), []), port)
    if not exporters:
        return local
    here = dict(node.labels)[CLUSTER_LABEL]
    own = tuple(
        msgspec.structs.replace(e, labels=_with_label(e.labels, here)) for e in local.endpoints
    )
    appended = tuple(
        gateway_endpoint(imp, mesh_tls(namespace, name, port, [san(imp)], domain))
        for imp in exporters
    )
    locality_lb = local.locality_lb or LocalityLb(failover_priority=(CLUSTER_LABEL,))
    return msgspec.structs.replace(local, endpoints=own + appended, locality_lb=locality_lb)


def _node(node: Node, cluster: str) -> Node:
    return msgspec.structs.replace(node, cluster=cluster, labels=_with_label(node.labels, cluster))


# --- backendRefs to Services that only other clusters have ---------------------------------

_Patches = dict[tuple[str, str, str], dict[tuple[int, int], str]]
"""(kind, namespace, name) of a route → (rule, backendRef) → clusterset cluster name."""


def _redirect_backends(
    base: Snapshot,
    resources: Resources,
    remote: Groups,
) -> tuple[tuple[PortBinding, ...], tuple[UnresolvedRef, ...]]:
    """The port bindings with backendRefs to imported-only Services resolved, and the
    unresolved references less those."""
    if not remote:
        return base.ports, base.unresolved
    resolver = Resolver.of(resources)
    patches: _Patches = {}
    resolved: set[tuple[str, str]] = set()
    routes: list[tuple[HTTPRoute | GRPCRoute, list[tuple[BackendRef, ...]]]] = [
        *((r, [rule.backend_refs for rule in r.spec.rules]) for r in resources.of_kind(HTTPRoute)),
        *((r, [rule.backend_refs for rule in r.spec.rules]) for r in resources.of_kind(GRPCRoute)),
    ]
    for route, rules in routes:
        for i, refs in enumerate(rules):
            for j, ref in enumerate(refs):
                namespace = ref.namespace or route.namespace
                if ref.port is None or (namespace, ref.name) in resolver.services:
                    continue
                if not exporters_of(remote.get((namespace, ref.name), []), ref.port):
                    continue
                if not resolver.permitted(route, "Service", namespace, ref.name):
                    continue
                target = clusterset_cluster_name(namespace, ref.name, ref.port)
                patches.setdefault((route.kind_name, route.namespace, route.name), {})[(i, j)] = (
                    target
                )
                field = item(join(item("spec.rules", i), "backendRefs"), j)
                resolved.add((str(key_of(route)), field))
    if not patches:
        return base.ports, base.unresolved
    ports = tuple(_patch_binding(b, patches) for b in base.ports)
    unresolved = tuple(u for u in base.unresolved if (u.source, u.field) not in resolved)
    return ports, unresolved


def _patch_binding(binding: PortBinding, patches: _Patches) -> PortBinding:
    listeners = tuple(_patch_listener(listener, patches) for listener in binding.listeners)
    return msgspec.structs.replace(binding, listeners=listeners)


def _patch_listener(listener: Listener, patches: _Patches) -> Listener:
    routes = tuple(_patch_route(route, patches) for route in listener.http_routes)
    return msgspec.structs.replace(listener, http_routes=routes)


def _patch_route(route: HTTPRouteConfig, patches: _Patches) -> HTTPRouteConfig:
    found = patches.get((route.kind, route.namespace, route.name))
    if not found:
        return route
    rules = tuple(_patch_rule(i, rule, found) for i, rule in enumerate(route.rules))
    return msgspec.structs.replace(route, rules=rules)


def _patch_rule(i: int, rule: RouteRule, found: dict[tuple[int, int], str]) -> RouteRule:
    backends = tuple(
        WeightedBackend(cluster=found[(i, j)], weight=b.weight)
        if not b.cluster and (i, j) in found
        else b
        for j, b in enumerate(rule.backends)
    )
    return msgspec.structs.replace(rule, backends=backends)
