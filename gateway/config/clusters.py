"""Build snapshot ``Cluster`` objects from Services and their EndpointSlices.

Called by ``gateway.config.compile``. Every port of every Service becomes one cluster named
``<namespace>/<service>:<port>``. Its endpoints come from the EndpointSlices in the same
namespace labelled ``kubernetes.io/service-name: <service>``, taking the slice port whose name
equals the Service port's name (the slice port number is the target port). Endpoint
conditions follow Kubernetes: unset ``ready`` means ready, unset ``serving`` means the same as
``ready``, unset ``terminating`` means not terminating. Each endpoint's locality, labels and
workload come from ``gateway.config.endpoints``. The Service's ``health.isthmus.dev/*``
annotations give every cluster its active health check, and the DestinationRule chosen by
``gateway.config.traffic_policy`` its pool, outlier detection and load balancing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from operator import attrgetter

from gateway.config import endpoints
from gateway.config.kinds.core import (
    H2C_APP_PROTOCOLS,
    EndpointSlice,
    EndpointSliceEndpoint,
    Service,
    ServicePort,
)
from gateway.config.snapshot import Cluster, Endpoint, UpstreamProtocol
from gateway.config.traffic_policy import TrafficPolicies

_by_name = attrgetter("name")


def cluster_name(namespace: str, service: str, port: int) -> str:
    return f"{namespace}/{service}:{port}"


def upstream_protocol(app_protocol: str | None) -> UpstreamProtocol:
    return "h2c" if app_protocol in H2C_APP_PROTOCOLS else "http1"


_MemoEntry = tuple[Service, tuple[EndpointSlice, ...], tuple[Cluster, ...]]


class ClusterMemo:
    """The clusters last built for each Service, reused while the Service and its
    EndpointSlices are the very same objects.

    A long-running compiler (the federation controller recompiles on every change of a
    cluster with thousands of Services) keeps one; the objects a store hands out stay the
    same until they change, so a recompilation rebuilds only the Services whose objects
    changed. Entries hold their objects, so an identity cannot be reused while it is
    remembered; each :func:`build_clusters` call forgets the Services it did not see.
    """

    def __init__(self) -> None:
        self._entries: dict[int, _MemoEntry] = {}
        self.hits = 0

    def built(self, service: Service, slices: list[EndpointSlice]) -> tuple[Cluster, ...] | None:
        entry = self._entries.get(id(service))
        if entry is None or entry[0] is not service or len(entry[1]) != len(slices):
            return None
        if any(a is not b for a, b in zip(entry[1], slices, strict=True)):
            return None
        self.hits += 1
        return entry[2]

    def remember(
        self, service: Service, slices: list[EndpointSlice], clusters: tuple[Cluster, ...]
    ) -> None:
        self._entries[id(service)] = (service, tuple(slices), clusters)

    def keep_only(self, services: list[Service]) -> None:
        seen = {id(s) for s in services}
        for key in [k for k in self._entries if k not in seen]:
            del self._entries[key]


def build_clusters(
    services: Iterable[Service],
    slices: Iterable[EndpointSlice],
    policies: TrafficPolicies | None = None,
    memo: ClusterMemo | None = None,
) -> tuple[Cluster, ...]:
    """One cluster per Service port, sorted by name, with ``policies`` applied."""
    policies = policies or TrafficPolicies()
    slices_of: dict[tuple[str, str], list[EndpointSlice]] = defaultdict(list)
    for endpoint_slice in slices:
        slices_of[(endpoint_slice.namespace, endpoint_slice.service_name)].append(endpoint_slice)
    listed = list(services)
    clusters: list[Cluster] = []
    for service in listed:
        own = slices_of[(service.namespace, service.name)]
        built = memo.built(service, own) if memo is not None else None
        if built is None:
            built = tuple(_service_cluster(service, port, own) for port in service.spec.ports)
            if memo is not None:
                memo.remember(service, own, built)
        if not policies.chosen:
            clusters.extend(built)
            continue
        clusters.extend(
            policies.apply(service, port.port, cluster)
            for port, cluster in zip(service.spec.ports, built, strict=True)
        )
    if memo is not None:
        memo.keep_only(listed)
    return tuple(sorted(clusters, key=_by_name))


def _service_cluster(service: Service, port: ServicePort, slices: list[EndpointSlice]) -> Cluster:
    return Cluster(
        name=cluster_name(service.namespace, service.name, port.port),
        protocol=upstream_protocol(port.app_protocol),
        endpoints=_endpoints(port, slices),
        lb_policy=service.lb_policy,
        health_check=service.health_check,
    )


def _endpoints(port: ServicePort, slices: list[EndpointSlice]) -> tuple[Endpoint, ...]:
    found: dict[tuple[str, int], Endpoint] = {}
    for endpoint_slice in sorted(slices, key=lambda s: s.name):
        for slice_port in endpoint_slice.ports:
            if (slice_port.name or "") != (port.name or "") or slice_port.port is None:
                continue
            for endpoint in endpoint_slice.endpoints:
                for address in endpoint.addresses:
                    # The same address may sit in two slices while they are being updated.
                    found.setdefault(
                        (address, slice_port.port),
                        _endpoint(endpoint_slice, endpoint, address, slice_port.port),
                    )
    return tuple(found.values())


def _endpoint(
    endpoint_slice: EndpointSlice, endpoint: EndpointSliceEndpoint, address: str, port: int
) -> Endpoint:
    conditions = endpoint.conditions
    region, zone, subzone = endpoints.locality(endpoint_slice, endpoint)
    ready = True if conditions.ready is None else conditions.ready
    return Endpoint(
        address=address,
        port=port,
        ready=ready,
        serving=ready if conditions.serving is None else conditions.serving,
        terminating=bool(conditions.terminating),
        zone=zone,
        hostname=endpoint.hostname,
        region=region,
        subzone=subzone,
        labels=endpoints.labels(endpoint_slice),
        workload=endpoints.workload_name(endpoint.target_ref),
    )
