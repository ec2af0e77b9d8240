"""Attach routes to Gateway listeners, following the Gateway API rules.

Called by ``gateway.config.compile`` with every translated route. A route attaches to a
listener when one of its ``parentRefs`` names the listener's Gateway (and, if given, the
listener's ``sectionName`` and ``port``), the listener's ``allowedRoutes`` admits the route's
namespace and kind, and the listener and route hostnames intersect. The attached copy carries
the intersected hostnames. A parentRef that attaches nowhere is recorded as unresolved.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

from gateway.config.kinds import Gateway, GRPCRoute, HTTPRoute, TLSRoute
from gateway.config.kinds.gateway import GatewayListener
from gateway.config.kinds.route_parts import ParentRef
from gateway.config.refs import Resolver
from gateway.config.schema import item
from gateway.config.snapshot import HTTPRouteConfig, TLSRouteConfig

ListenerKey = tuple[str, str, str]
"""(Gateway namespace, Gateway name, listener name)."""


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    """A route object and its snapshot form."""

    route: HTTPRoute | GRPCRoute | TLSRoute
    config: HTTPRouteConfig | TLSRouteConfig

    def order(self) -> tuple[str, str, str, str]:
        """Gateway API tie-break order: oldest first, then by namespace/name."""
        meta = self.route.metadata
        return (meta.creation_timestamp, meta.namespace, meta.name, self.route.kind_name)


def intersect_hostnames(listener: str | None, route: Sequence[str]) -> tuple[str, ...] | None:
    """The hostnames a route serves on a listener, or ``None`` if they do not intersect.

    ``()`` means any hostname. A wildcard ``*.example.com`` covers every name that ends in
    ``.example.com`` (any number of labels) but not ``example.com`` itself.
    """
    if listener is None:
        return tuple(route)
    if not route:
        return (listener,)
    found: list[str] = []
    for hostname in route:
        if hostname == listener or _covers(listener, hostname):
            chosen = hostname
        elif _covers(hostname, listener):
            chosen = listener
        else:
            continue
        if chosen not in found:
            found.append(chosen)
    return tuple(found) or None


def _covers(wildcard: str, hostname: str) -> bool:
    return wildcard.startswith("*.") and hostname.endswith(wildcard[1:])


def attach_routes(
    gateways: Iterable[Gateway], routes: Iterable[CompiledRoute], resolver: Resolver
) -> dict[ListenerKey, list[CompiledRoute]]:
    """The routes attached to each listener, in Gateway API precedence order."""
    by_name = {(g.namespace, g.name): g for g in gateways}
    attached: dict[ListenerKey, dict[tuple[str, str, str], CompiledRoute]] = defaultdict(dict)
    for compiled in routes:
        route = compiled.route
        if not route.spec.parent_refs:
            resolver.note(route, "spec.parentRefs", "Gateway", "no parentRefs: not attached")
        for i, ref in enumerate(route.spec.parent_refs):
            path = item("spec.parentRefs", i)
            namespace = ref.namespace or route.namespace
            gateway = by_name.get((namespace, ref.name))
            target = f"Gateway {namespace}/{ref.name}"
            if gateway is None:
                resolver.note(route, path, target, "Gateway not found")
                continue
            candidates = _candidates(gateway, ref)
            if not candidates:
                resolver.note(route, path, target, _no_listener(ref))
                continue
            reasons: list[str] = []
            for listener in candidates:
                hostnames, reason = _admit(gateway, listener, route)
                if hostnames is None:
                    reasons.append(f"listener {listener.name} {reason}")
                    continue
                config = msgspec.structs.replace(compiled.config, hostnames=hostnames)
                identity = (route.kind_name, route.namespace, route.name)
                key = (gateway.namespace, gateway.name, listener.name)
                attached[key].setdefault(identity, CompiledRoute(route, config))
            if len(reasons) == len(candidates):
                resolver.note(route, path, target, "; ".join(reasons))
    return {key: sorted(found.values(), key=CompiledRoute.order) for key, found in attached.items()}


def _candidates(gateway: Gateway, ref: ParentRef) -> list[GatewayListener]:
    return [
        listener
        for listener in gateway.spec.listeners
        if ref.section_name in (None, listener.name) and ref.port in (None, listener.port)
    ]


def _no_listener(ref: ParentRef) -> str:
    wanted = []
    if ref.section_name is not None:
        wanted.append(f'named "{ref.section_name}"')
    if ref.port is not None:
        wanted.append(f"on port {ref.port}")
    return "no listener " + " ".join(wanted)


def _admit(
    gateway: Gateway, listener: GatewayListener, route: HTTPRoute | GRPCRoute | TLSRoute
) -> tuple[tuple[str, ...] | None, str]:
    """The route's hostnames on this listener, or ``None`` and why it may not attach."""
    if route.kind_name not in listener.route_kinds():
        return None, f"does not accept {route.kind_name}"
    if listener.allowed_routes.namespaces.from_ == "Same" and route.namespace != gateway.namespace:
        return None, f"accepts routes from namespace {gateway.namespace} only"
    hostnames = intersect_hostnames(listener.hostname, route.spec.hostnames)
    if hostnames is None:
        return None, f"has hostname {listener.hostname}, which no route hostname intersects"
    return hostnames, ""
