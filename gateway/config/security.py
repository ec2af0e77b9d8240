"""Put the security policies that apply to each listener on it.

Called by ``gateway.config.compile`` once the port bindings are built. For each Gateway
listener of this proxy it collects the ``AuthorizationPolicy`` objects and the
``RequestAuthentication`` JWT rules in force there (scoping rules in
``gateway.config.kinds.policy_target``: ``targetRefs`` to the listener's Gateway, or the
policy's namespace and ``selector`` against the proxy's ``Node``) and returns the bindings
with ``Listener.authz_policies`` and ``Listener.jwt_rules`` filled in. Policies keep the
loader's order (namespace, then name), so the same resources give the same snapshot.

TLS passthrough listeners never see HTTP, so nothing is put on them.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from gateway.config.kinds import AuthorizationPolicy, RequestAuthentication
from gateway.config.kinds.policy_target import policy_applies
from gateway.config.resources import Resources
from gateway.config.snapshot import Listener, Node, PortBinding


def apply_security(
    ports: Sequence[PortBinding], resources: Resources, node: Node
) -> tuple[PortBinding, ...]:
    """``ports`` with each HTTP listener's security policies set."""
    authz = resources.of_kind(AuthorizationPolicy)
    authn = resources.of_kind(RequestAuthentication)
    if not authz and not authn:
        return tuple(ports)
    out = []
    for binding in ports:
        listeners = tuple(_with_policies(lst, authz, authn, node) for lst in binding.listeners)
        out.append(msgspec.structs.replace(binding, listeners=listeners))
    return tuple(out)


def _with_policies(
    listener: Listener,
    authz: Sequence[AuthorizationPolicy],
    authn: Sequence[RequestAuthentication],
    node: Node,
) -> Listener:
    if listener.protocol == "TLS":
        return listener
    gw = listener.gateway
    policies = tuple(
        p.policy()
        for p in authz
        if policy_applies(p.namespace, p.body.selector, p.gateways, node, gw)
    )
    rules = tuple(
        rule
        for p in authn
        if policy_applies(p.namespace, p.body.selector, p.gateways, node, gw)
        for rule in p.rules()
    )
    if not policies and not rules:
        return listener
    return msgspec.structs.replace(listener, authz_policies=policies, jwt_rules=rules)
