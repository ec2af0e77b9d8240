"""``v1 Service`` and ``discovery.k8s.io/v1 EndpointSlice``: where requests can go.

Validated by the loader; ``gateway.config.clusters`` turns each Service port, together with
the EndpointSlices labelled ``kubernetes.io/service-name``, into a snapshot ``Cluster``.

The annotation ``isthmus.dev/lb-policy`` on a Service (``ROUND_ROBIN``, ``LEAST_REQUEST`` or
``RANDOM``) picks the load-balancing policy of all its clusters; a DestinationRule's
``loadBalancer.simple`` overrides it. The ``health.isthmus.dev/*`` annotations turn on active
health checks (``gateway.config.kinds.health`` lists them).

Endpoint locality (for ``localityLbSetting``): the zone is the endpoint's ``zone``; the
region and subzone come from the endpoint's ``deprecatedTopology`` keys
``topology.kubernetes.io/region`` and ``topology.istio.io/subzone`` or, since a local
directory has no Nodes, from the same labels on the EndpointSlice (which may also give
``topology.kubernetes.io/zone``). The EndpointSlice labels are the endpoints' labels for
``failoverPriority``. An endpoint's ``targetRef`` Pod names its workload (``gateway.config.
endpoints``).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal, cast, get_args

import msgspec

from gateway.config.kinds.health import health_check
from gateway.config.kinds.meta import DNS_LABEL, LabelName, Object, Port
from gateway.config.schema import FieldIssue, Model, expect, item, join
from gateway.config.snapshot import HealthCheck, LbPolicy

LB_POLICY_ANNOTATION = "isthmus.dev/lb-policy"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
H2C_APP_PROTOCOLS = ("kubernetes.io/h2c", "grpc")

PortName = Annotated[str, expect("a port name (lower case DNS label)", pattern=DNS_LABEL)]
L4Protocol = Literal["TCP", "UDP", "SCTP"]


class ServicePort(Model, frozen=True, kw_only=True):
    unsupported_values = {"protocol": ("UDP", "SCTP")}

    port: Port
    name: PortName | None = None
    target_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | str | None = None
    protocol: L4Protocol = "TCP"
    app_protocol: str | None = None
    node_port: int | None = None


class ServiceSpec(Model, frozen=True, kw_only=True):
    unsupported_values = {"type": ("ExternalName",), "sessionAffinity": ("ClientIP",)}
    unsupported_fields = {
        "externalName": "not supported by isthmus (ExternalName Services)",
        "sessionAffinityConfig": "not supported by isthmus",
    }

    ports: tuple[ServicePort, ...] = ()
    selector: dict[str, str] = {}
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    cluster_ip: str | None = msgspec.field(default=None, name="clusterIP")
    cluster_ips: tuple[str, ...] = msgspec.field(default=(), name="clusterIPs")
    ip_families: tuple[str, ...] = ()
    ip_family_policy: str | None = None
    external_ips: tuple[str, ...] = msgspec.field(default=(), name="externalIPs")
    session_affinity: Literal["None", "ClientIP"] = "None"
    external_traffic_policy: str | None = None
    internal_traffic_policy: str | None = None
    publish_not_ready_addresses: bool = False
    load_balancer_ip: str | None = msgspec.field(default=None, name="loadBalancerIP")
    load_balancer_class: str | None = None
    load_balancer_source_ranges: tuple[str, ...] = ()
    allocate_load_balancer_node_ports: bool | None = None
    health_check_node_port: int | None = None
    traffic_distribution: str | None = None


class Service(Object, frozen=True, kw_only=True):
    kind_name = "Service"
    api_versions = ("v1",)

    spec: ServiceSpec = ServiceSpec()

    @property
    def lb_policy(self) -> LbPolicy:
        value = self.metadata.annotations.get(LB_POLICY_ANNOTATION, "ROUND_ROBIN")
        return cast(LbPolicy, value) if value in get_args(LbPolicy) else "ROUND_ROBIN"

    @property
    def health_check(self) -> HealthCheck | None:
        """The active health check of the ``health.isthmus.dev/*`` annotations, if any."""
        return health_check(self.metadata.annotations)[0]

    def check(self) -> list[FieldIssue]:
        issues: list[FieldIssue] = []
        if len(self.name) > 63:
            issues.append(("metadata.name", "a Service name must be at most 63 characters"))
        policy = self.metadata.annotations.get(LB_POLICY_ANNOTATION)
        if policy is not None and policy not in get_args(LbPolicy):
            allowed = ", ".join(get_args(LbPolicy))
            path = join("metadata.annotations", LB_POLICY_ANNOTATION)
            issues.append(
                (path, f'"{policy}" is not a load-balancing policy; use one of {allowed}')
            )
        issues += health_check(self.metadata.annotations)[1]
        seen_names: set[str] = set()
        seen_ports: set[int] = set()
        for i, port in enumerate(self.spec.ports):
            here = item("spec.ports", i)
            if len(self.spec.ports) > 1 and not port.name:
                issues.append((join(here, "name"), "required when a Service has several ports"))
            if port.name and port.name in seen_names:
                issues.append((join(here, "name"), f'duplicate port name "{port.name}"'))
            if port.port in seen_ports:
                issues.append((join(here, "port"), f"duplicate port {port.port}"))
            seen_names.add(port.name or "")
            seen_ports.add(port.port)
        return issues


class EndpointConditions(Model, frozen=True, kw_only=True):
    """``ready`` unset means ready; ``serving`` unset defers to ``ready``."""

    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class EndpointSliceEndpoint(Model, frozen=True, kw_only=True):
    unsupported_fields = {
        "hints": "not supported by isthmus (topology hints)",
    }

    addresses: Annotated[tuple[str, ...], msgspec.Meta(min_length=1, max_length=100)]
    conditions: EndpointConditions = EndpointConditions()
    hostname: LabelName | None = None
    node_name: str | None = None
    zone: str | None = None
    target_ref: dict[str, Any] | None = None
    deprecated_topology: dict[str, str] = {}


class EndpointSlicePort(Model, frozen=True, kw_only=True):
    unsupported_values = {"protocol": ("UDP", "SCTP")}

    name: PortName | None = None
    port: Port | None = None
    protocol: L4Protocol = "TCP"
    app_protocol: str | None = None


class EndpointSlice(Object, frozen=True, kw_only=True):
    kind_name = "EndpointSlice"
    api_versions = ("discovery.k8s.io/v1",)

    address_type: Literal["IPv4", "IPv6", "FQDN"]
    endpoints: tuple[EndpointSliceEndpoint, ...] = ()
    ports: tuple[EndpointSlicePort, ...] = ()

    @property
    def service_name(self) -> str:
        return self.metadata.labels.get(SERVICE_NAME_LABEL, "")

    def check(self) -> list[FieldIssue]:
        issues: list[FieldIssue] = []
        if not self.service_name:
            path = join("metadata.labels", SERVICE_NAME_LABEL)
            issues.append((path, "required: the name of the Service these endpoints belong to"))
        for i, endpoint in enumerate(self.endpoints):
            for j, address in enumerate(endpoint.addresses):
                problem = _address_problem(self.address_type, address)
                if problem:
                    issues.append((item(join(item("endpoints", i), "addresses"), j), problem))
        names = [p.name or "" for p in self.ports]
        for i, name in enumerate(names):
            if name in names[:i]:
                issues.append((join(item("ports", i), "name"), f'duplicate port name "{name}"'))
        return issues


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}", re.ASCII)


def _address_problem(address_type: str, address: str) -> str | None:
    if address_type == "FQDN":
        return None
    # A plain dotted quad first (a controller checks tens of thousands of addresses, and
    # ipaddress accepts exactly these as IPv4); anything else gets ipaddress's verdict.
    if address_type == "IPv4" and _DOTTED_QUAD.fullmatch(address):
        return None
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return f'"{address}" is not an IP address'
    wanted = 4 if address_type == "IPv4" else 6
    if parsed.version != wanted:
        return f'"{address}" is not an {address_type} address (addressType is {address_type})'
    return None
