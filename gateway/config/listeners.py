"""Turn Gateway listeners into snapshot ``Listener`` and ``PortBinding`` objects.

Called by ``gateway.config.compile`` after the routes are attached. Listeners that share an
address and port become one ``PortBinding``; the Gateway's ``spec.addresses`` (type
IPAddress) give the addresses, ``0.0.0.0`` by default. All listeners on one port must speak
the same protocol, and listeners in one binding must differ by hostname; anything else is a
load error. An HTTPS listener none of whose certificates resolves is not programmed (it is
left out and recorded as unresolved).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from gateway.config.attach import CompiledRoute, ListenerKey
from gateway.config.errors import Problem
from gateway.config.kinds import Gateway
from gateway.config.kinds.gateway import GatewayListener
from gateway.config.refs import Resolver
from gateway.config.resources import Resources
from gateway.config.schema import item, join
from gateway.config.snapshot import (
    CertificatePair,
    HTTPRouteConfig,
    Listener,
    PortBinding,
    TLSRouteConfig,
)

Claims = dict[tuple[str, int, str | None], tuple[Gateway, GatewayListener]]


def check_conflicts(resources: Resources, gateways: Sequence[Gateway]) -> list[Problem]:
    """Protocol conflicts on a port, and listeners a binding could not tell apart."""
    problems: list[Problem] = []
    # The first listener seen on each port, and on each (address, port, hostname).
    by_port: dict[int, tuple[Gateway, GatewayListener]] = {}
    claims: Claims = {}
    for gateway in gateways:
        for i, listener in enumerate(gateway.spec.listeners):
            found = _conflict(gateway, listener, by_port, claims)
            if found is not None:
                field, message = found
                path = item("spec.listeners", i) + field
                problems.append(resources.problem(gateway, path, message))
    return problems


def _conflict(
    gateway: Gateway,
    listener: GatewayListener,
    by_port: dict[int, tuple[Gateway, GatewayListener]],
    claims: Claims,
) -> tuple[str, str] | None:
    first_gateway, first = by_port.setdefault(listener.port, (gateway, listener))
    if first.listener_protocol != listener.listener_protocol:
        return "", (
            f"port {listener.port}: {listener.protocol} conflicts with {first.protocol} "
            f"listener {_name(first_gateway, first)} on the same port"
        )
    for address in gateway.bind_addresses:
        slot = (address, listener.port, listener.hostname)
        first_gateway, first = claims.setdefault(slot, (gateway, listener))
        if first is not listener:
            return ".hostname", (
                f"conflicts with listener {_name(first_gateway, first)}: same address {address}, "
                f"port {listener.port} and hostname {listener.hostname or '(any)'}"
            )
    return None


def build_ports(
    gateways: Sequence[Gateway],
    attached: dict[ListenerKey, list[CompiledRoute]],
    resolver: Resolver,
) -> tuple[PortBinding, ...]:
    """The port bindings, sorted by port and address; call after :func:`check_conflicts`."""
    bound: dict[tuple[str, int], list[Listener]] = defaultdict(list)
    for gateway in gateways:
        for i, spec in enumerate(gateway.spec.listeners):
            routes = attached.get((gateway.namespace, gateway.name, spec.name), [])
            listener = _listener(gateway, item("spec.listeners", i), spec, routes, resolver)
            if listener is None:
                continue
            for address in gateway.bind_addresses:
                bound[(address, spec.port)].append(listener)
    return tuple(
        PortBinding(
            address=address, port=port, protocol=listeners[0].protocol, listeners=tuple(listeners)
        )
        for (address, port), listeners in sorted(bound.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    )


def _listener(
    gateway: Gateway,
    path: str,
    spec: GatewayListener,
    routes: list[CompiledRoute],
    resolver: Resolver,
) -> Listener | None:
    certificates: list[CertificatePair] = []
    if spec.protocol == "HTTPS" and spec.tls is not None:
        refs_path = join(join(path, "tls"), "certificateRefs")
        for j, ref in enumerate(spec.tls.certificate_refs):
            pair = resolver.certificate(gateway, item(refs_path, j), ref, spec.hostname)
            if pair is not None:
                certificates.append(pair)
        if not certificates:
            resolver.note(
                gateway,
                path,
                f"listener {spec.name}",
                "no certificateRef resolved; the listener is not programmed",
            )
            return None
    return Listener(
        gateway=f"{gateway.namespace}/{gateway.name}",
        name=spec.name,
        port=spec.port,
        protocol=spec.listener_protocol,
        hostname=spec.hostname,
        certificates=tuple(certificates),
        http_routes=tuple(r.config for r in routes if isinstance(r.config, HTTPRouteConfig)),
        tls_routes=tuple(r.config for r in routes if isinstance(r.config, TLSRouteConfig)),
    )


def _name(gateway: Gateway, listener: GatewayListener) -> str:
    return f"{gateway.namespace}/{gateway.name}/{listener.name}"
