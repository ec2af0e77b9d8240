"""The listener-level security chain of one port: JWT authn, then authz, before routing.

Istio runs request authentication and authorization as HTTP filters of the listener, ahead of
the router; so does isthmus. The engine (``gateway.proxy.engine``) builds one
:class:`ListenerSecurity` per HTTP port binding with :func:`build_listener_security` (None
when no listener of the port has a policy, which keeps the hot path free of it), and the
HTTP handler (``gateway.proxy.http``) calls :meth:`ListenerSecurity.on_request` for every
request before it matches a route.

Several listeners may share a port, told apart by hostname; each has its own policies. The
request's Host picks the listener the way the route table picks it (exact name, then the
longest wildcard, then a listener without a hostname). A Host that no listener serves gets
no policy here; routing then answers 404.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.config.snapshot import AuthzPolicy, JwtRule, Listener
from gateway.filters.authn_jwt import JwtAuthn
from gateway.filters.authz import Authz
from gateway.filters.base import HttpFilter, LocalReply, RequestContext
from gateway.filters.jwks import JwksSource
from gateway.routing.hostnames import HostIndex, normalize_hostname, split_authority

Chain = tuple[HttpFilter, ...]


class ListenerSecurity:
    __slots__ = ("_index", "_only", "chains")

    def __init__(self, index: HostIndex[Chain]) -> None:
        self._index = index
        # One listener (or all alike) behind the port: no host lookup per request.
        values = index.values()
        self._only: Chain | None = values[0] if len(index) == 1 and index.any is not None else None
        self.chains = tuple(values)

    def chain_for(self, authority: str) -> Chain:
        only = self._only
        if only is not None:
            return only
        return self._index.lookup(split_authority(authority)[0]) or ()

    def on_request(self, ctx: RequestContext) -> LocalReply | None:
        for f in self.chain_for(ctx.request.authority):
            reply = f.on_request(ctx)
            if reply is not None:
                return reply
        return None

    def __repr__(self) -> str:
        return f"<ListenerSecurity [{len(self._index)} listeners]>"


def build_listener_security(
    listeners: Sequence[Listener], port: int, source_for: Callable[[JwtRule], JwksSource]
) -> ListenerSecurity | None:
    """The security chain of a port, or None when none of its listeners has a policy.
    Raises ``ValueError`` naming the policy that cannot be used."""
    if not any(lst.authz_policies or lst.jwt_rules for lst in listeners):
        return None
    built: dict[tuple[tuple[AuthzPolicy, ...], tuple[JwtRule, ...]], Chain] = {}
    index: HostIndex[Chain] = HostIndex()
    for listener in listeners:
        if listener.protocol == "TLS":
            continue
        key = (listener.authz_policies, listener.jwt_rules)
        chain = built.get(key)
        if chain is None:
            filters: list[HttpFilter] = []
            if listener.jwt_rules:
                filters.append(JwtAuthn(listener.jwt_rules, source_for))
            if listener.authz_policies:
                filters.append(Authz(listener.authz_policies, port))
            chain = built[key] = tuple(filters)
        host = normalize_hostname(listener.hostname) if listener.hostname else None
        index.add(host, chain)
    return ListenerSecurity(index)


def jwks_uris(listeners: Sequence[Listener]) -> set[str]:
    """The ``jwksUri`` of every JWT rule on ``listeners``."""
    return {r.jwks_uri for lst in listeners for r in lst.jwt_rules if r.jwks_uri}
