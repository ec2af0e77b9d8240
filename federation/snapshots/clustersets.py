"""Imported services as snapshot clusters: the clusterset clusters and their gateway endpoints.

Used by :mod:`federation.snapshots.compile`, whose docstring states the rules: every port of
``<ns>/<name>`` that another cluster exports becomes the cluster
``<ns>/<name>.clusterset:<port>``, with one endpoint per exporting cluster (its east-west
gateway, reached with Istio mutual TLS and the service's SNI).

:class:`ImportIndex` keeps the imports grouped by service and the clusterset clusters built
from them between compilations. A controller's imports hold every service of every other
cluster (thousands) while a typical change touches one, so the index compares the new
imports with the ones it last saw and rebuilds only the services whose entries changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from operator import attrgetter

from federation.model import ImportedService, ServicePort, service_sni
from gateway.config.clusters import upstream_protocol
from gateway.config.snapshot import Cluster, Endpoint, LocalityLb, UpstreamTls

CLUSTER_LABEL = "topology.istio.io/cluster"

ImportKey = tuple[str, str, str]
"""(exporting cluster, namespace, name) of an imported service."""

ServiceKey = tuple[str, str]
"""(namespace, name) of a service, whichever clusters export it."""

Groups = Mapping[ServiceKey, list[ImportedService]]
"""Imports by service, each list sorted by exporting cluster."""

by_name = attrgetter("name")


def clusterset_cluster_name(namespace: str, name: str, port: int) -> str:
    return f"{namespace}/{name}.clusterset:{port}"


def ports_of(exporters: list[ImportedService]) -> list[ServicePort]:
    """Every port number any exporter offers, the first exporter's description winning."""
    if len(exporters) == 1:
        ports = exporters[0].ports
        if len(ports) == 1:
            return [ports[0]]
    found: dict[int, ServicePort] = {}
    for imp in exporters:
        for port in imp.ports:
            found.setdefault(port.port, port)
    return [found[p] for p in sorted(found)]


def exporters_of(exporters: list[ImportedService], port: int) -> list[ImportedService]:
    """The exporters that offer ``port``."""
    return [imp for imp in exporters if any(p.port == port for p in imp.ports)]


def _locality(value: str) -> tuple[str | None, str | None, str | None]:
    parts = [*value.split("/", 2), "", ""][:3]
    return (parts[0] or None, parts[1] or None, parts[2] or None)


def san(imp: ImportedService) -> str:
    """The peer identities accepted from ``imp``'s gateway: any of its namespace."""
    return f"spiffe://{imp.trust_domain}/ns/{imp.namespace}/*"


def mesh_tls(namespace: str, name: str, port: int, sans: Iterable[str], domain: str) -> UpstreamTls:
    """Istio mutual TLS to an east-west gateway, with the service's SNI."""
    return UpstreamTls(
        mode="ISTIO_MUTUAL",
        sni=service_sni(namespace, name, port, domain),
        subject_alt_names=tuple(sorted(set(sans))),
    )


def gateway_endpoint(imp: ImportedService, tls: UpstreamTls | None) -> Endpoint:
    """The exporting cluster's east-west gateway as an endpoint."""
    region, zone, subzone = _locality(imp.locality)
    ready = imp.healthy and imp.ready_endpoints > 0
    return Endpoint(
        address=imp.gateway_address,
        port=imp.gateway_port,
        ready=ready,
        serving=ready,
        region=region,
        zone=zone,
        subzone=subzone,
        labels=((CLUSTER_LABEL, imp.cluster),),
        tls=tls,
    )


def clusterset_cluster(
    namespace: str, name: str, port: ServicePort, exporters: list[ImportedService], domain: str
) -> Cluster:
    serving = exporters_of(exporters, port.port)
    return Cluster(
        name=clusterset_cluster_name(namespace, name, port.port),
        protocol=upstream_protocol(port.app_protocol),
        endpoints=tuple(gateway_endpoint(imp, None) for imp in serving),
        locality_lb=LocalityLb(),
        tls=mesh_tls(namespace, name, port.port, (san(imp) for imp in serving), domain),
        origin_cluster=",".join(imp.cluster for imp in serving),
    )


class ImportIndex:
    """The imports of one cluster grouped by service, with their clusterset clusters, kept
    up to date from one imports mapping to the next.

    :meth:`update` takes the controller's current imports; a mapping it has already seen
    (the same object) costs nothing, another one a comparison entry by entry and the
    rebuilding of the services whose entries differ. A service's group list is replaced
    (never changed in place) when it changes, so a caller may tell an unchanged group by
    its identity. The result is the same as grouping the whole mapping and building every
    service's clusters from scratch (``tests/federation/snapshots/test_fed_snap_clustersets.py``).
    """

    def __init__(self, cluster: str, domain: str) -> None:
        self.cluster = cluster
        self.domain = domain
        self.groups: dict[ServiceKey, list[ImportedService]] = {}
        self._seen: Mapping[ImportKey, ImportedService] = {}
        self._by_service: dict[ServiceKey, dict[str, ImportedService]] = {}
        self._clusters: dict[ServiceKey, tuple[Cluster, ...]] = {}
        self._ordered: tuple[Cluster, ...] = ()

    @property
    def clusters(self) -> tuple[Cluster, ...]:
        """Every clusterset cluster, sorted by name."""
        return self._ordered

    def update(self, imports: Mapping[ImportKey, ImportedService]) -> None:
        """Bring the index to ``imports``. The caller must not change ``imports`` afterwards
        (the next call compares with it)."""
        old = self._seen
        if imports is old:
            return
        touched: set[ServiceKey] = set()
        for key in old.keys() - imports.keys():
            imp = old[key]
            if imp.cluster != self.cluster:
                touched.add((imp.namespace, imp.name))
                self._by_service.get((imp.namespace, imp.name), {}).pop(imp.cluster, None)
        for key, imp in imports.items():
            was = old.get(key)
            if (was is imp or was == imp) or imp.cluster == self.cluster:
                continue
            if was is not None and (was.namespace, was.name) != (imp.namespace, imp.name):
                touched.add((was.namespace, was.name))  # a key that moved: not expected
                self._by_service.get((was.namespace, was.name), {}).pop(was.cluster, None)
            service = (imp.namespace, imp.name)
            touched.add(service)
            self._by_service.setdefault(service, {})[imp.cluster] = imp
        self._seen = imports
        if not touched:
            return
        for service in touched:
            by = self._by_service.get(service)
            if not by:
                self._by_service.pop(service, None)
                self.groups.pop(service, None)
                self._clusters.pop(service, None)
                continue
            exporters = [by[c] for c in sorted(by)]
            self.groups[service] = exporters
            namespace, name = service
            self._clusters[service] = tuple(
                clusterset_cluster(namespace, name, port, exporters, self.domain)
                for port in ports_of(exporters)
            )
        self._ordered = tuple(
            sorted((c for built in self._clusters.values() for c in built), key=by_name)
        )
