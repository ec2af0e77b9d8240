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


def cluster_name(namespace: str, service: str, port: int) -> str:
    return f"{namespace}/{service}:{port}"


def upstream_protocol(app_protocol: str | None) -> UpstreamProtocol:
    return "h2c" if app_protocol in H2C_APP_PROTOCOLS else "http1"


def build_clusters(
    services: Iterable[Service],
    slices: Iterable[EndpointSlice],
    policies: TrafficPolicies | None = None,
) -> tuple[Cluster, ...]:
    """One cluster per Service port, sorted by name, with ``policies`` applied."""
    policies = policies or TrafficPolicies()
    slices_of: dict[tuple[str, str], list[EndpointSlice]] = defaultdict(list)
    for endpoint_slice in slices:
        slices_of[(endpoint_slice.namespace, endpoint_slice.service_name)].append(endpoint_slice)
    clusters = [
        policies.apply(
            service,
            port.port,
            Cluster(
                name=cluster_name(service.namespace, service.name, port.port),
                protocol=upstream_protocol(port.app_protocol),
                endpoints=_endpoints(port, slices_of[(service.namespace, service.name)]),
                lb_policy=service.lb_policy,
                health_check=service.health_check,
            ),
        )
        for service in services
        for port in service.spec.ports
    ]
    return tuple(sorted(clusters, key=lambda c: c.name))


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
