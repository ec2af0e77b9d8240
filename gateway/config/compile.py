"""Compile loaded :class:`Resources` into the immutable, versioned :class:`Snapshot`.

Called by the proxy process (startup and reload) and the ``isthmus`` CLI, usually through
:func:`load_snapshot`. The steps: Services and EndpointSlices become clusters
(``clusters``), with the DestinationRules that apply to them (``traffic_policy``); routes
are translated with their references resolved (``translate``, ``refs``); routes attach to
Gateway listeners (``attach``); listeners are grouped into port bindings (``listeners``);
ProxySettings become the limits, the node and the telemetry settings. The same resources
always give the same snapshot and so the same version hash.
"""

from __future__ import annotations

import os

from gateway.config.attach import CompiledRoute, attach_routes
from gateway.config.clusters import ClusterMemo, build_clusters
from gateway.config.errors import ConfigError
from gateway.config.kinds import (
    DestinationRule,
    EndpointSlice,
    Gateway,
    GRPCRoute,
    HTTPRoute,
    ProxySettings,
    Service,
    TLSRoute,
)
from gateway.config.listeners import build_ports, check_conflicts
from gateway.config.loader import load_directory
from gateway.config.refs import Resolver
from gateway.config.resources import Resources
from gateway.config.security import apply_security
from gateway.config.snapshot import Limits, Node, Snapshot, Telemetry
from gateway.config.traffic_policy import TrafficPolicies
from gateway.config.translate import grpc_route_config, http_route_config, tls_route_config


def compile_resources(
    resources: Resources, *, versioned: bool = True, memo: ClusterMemo | None = None
) -> Snapshot:
    """The snapshot for ``resources``, with its version set (unless ``versioned`` is False:
    for a caller that changes it further and versions the result). ``memo``: clusters of
    an earlier compilation to reuse (``ClusterMemo``). Raises :class:`ConfigError`."""
    gateways = resources.of_kind(Gateway)
    problems = check_conflicts(resources, gateways)
    if problems:
        raise ConfigError(problems)
    resolver = Resolver.of(resources)
    routes = (
        [CompiledRoute(r, http_route_config(r, resolver)) for r in resources.of_kind(HTTPRoute)]
        + [CompiledRoute(r, grpc_route_config(r, resolver)) for r in resources.of_kind(GRPCRoute)]
        + [CompiledRoute(r, tls_route_config(r, resolver)) for r in resources.of_kind(TLSRoute)]
    )
    attached = attach_routes(gateways, routes, resolver)
    ports = build_ports(gateways, attached, resolver)
    settings = resources.of_kind(ProxySettings)
    node = settings[0].node() if settings else Node()
    ports = apply_security(ports, resources, node)
    services = resources.of_kind(Service)
    policies = TrafficPolicies.of(services, resources.of_kind(DestinationRule), node.namespace)
    unresolved = resolver.unresolved + policies.unresolved
    snapshot = Snapshot(
        ports=ports,
        clusters=build_clusters(services, resources.of_kind(EndpointSlice), policies, memo),
        limits=settings[0].limits() if settings else Limits(),
        node=node,
        telemetry=settings[0].telemetry() if settings else Telemetry(),
        unresolved=tuple(sorted(unresolved, key=lambda u: (u.source, u.field, u.target, u.reason))),
    )
    return snapshot.with_version() if versioned else snapshot


def load_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """Load, validate and compile the configuration under ``path``."""
    return compile_resources(load_directory(path))
