"""Filter chains: from a route rule's filter structs to filter objects, and running them.

The role code builds each port's route table through :func:`build_route_table`, which calls
:func:`build_filters` once per rule; the HTTP handler then calls :func:`run_request` before the
router and :func:`run_response` on the upstream's response head.

A filter plugs in by mapping its snapshot struct type to a factory in :data:`FILTER_FACTORIES`
(or with :func:`register`); authn, authz, rate limit, fault and CORS each add one line for
their own module. The router is the terminal filter and is never in a chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from gateway.codec.messages import ResponseHead
from gateway.config.snapshot import (
    FaultFilter,
    Listener,
    RateLimitFilter,
    RequestHeaderModifierFilter,
    RequestMirrorFilter,
    RequestRedirectFilter,
    ResponseHeaderModifierFilter,
    RouteRule,
    UnresolvedFilter,
    URLRewriteFilter,
)
from gateway.filters.base import HttpFilter, LocalReply, RequestContext
from gateway.filters.fault import Fault
from gateway.filters.rate_limit import RateLimit
from gateway.filters.request_header_modifier import RequestHeaderModifier
from gateway.filters.request_mirror import RequestMirror
from gateway.filters.request_redirect import RequestRedirect
from gateway.filters.response_header_modifier import ResponseHeaderModifier
from gateway.filters.unresolved_ref import UnresolvedRef
from gateway.filters.url_rewrite import URLRewrite
from gateway.routing.table import RouteTable

S = TypeVar("S")

FilterChain = tuple[HttpFilter, ...]

# Snapshot struct type -> factory. Keyed by the exact type: structs are final in practice.
FILTER_FACTORIES: dict[type[Any], Callable[[Any], HttpFilter]] = {
    RequestHeaderModifierFilter: RequestHeaderModifier,
    ResponseHeaderModifierFilter: ResponseHeaderModifier,
    RequestRedirectFilter: RequestRedirect,
    URLRewriteFilter: URLRewrite,
    RequestMirrorFilter: RequestMirror,
    RateLimitFilter: RateLimit,
    FaultFilter: Fault,
    UnresolvedFilter: UnresolvedRef,
}


def register(struct_type: type[S], factory: Callable[[S], HttpFilter]) -> None:
    """Map a snapshot filter struct to the factory that builds its filter."""
    FILTER_FACTORIES[struct_type] = factory


def build_filters(rule: RouteRule) -> FilterChain:
    """The filters of ``rule``, in the rule's order. Raises ``ValueError`` naming the filter
    when its configuration cannot be used, ``TypeError`` for a struct nobody registered."""
    chain: list[HttpFilter] = []
    for i, config in enumerate(rule.filters):
        factory = FILTER_FACTORIES.get(type(config))
        if factory is None:
            raise TypeError(f"filters[{i}]: no filter is registered for {type(config).__name__}")
        try:
            chain.append(factory(config))
        except ValueError as e:
            raise ValueError(f"filters[{i}].{e}") from e
    return tuple(chain)


def build_route_table(listeners: Sequence[Listener]) -> RouteTable[HttpFilter]:
    """The route table of one port, every rule with its filter chain."""
    return RouteTable.build(listeners, build_filters)


def run_request(chain: Sequence[HttpFilter], ctx: RequestContext) -> LocalReply | None:
    """Run the request path in order; the first reply stops the chain and is returned."""
    for f in chain:
        reply = f.on_request(ctx)
        if reply is not None:
            return reply
    return None


def run_response(chain: Sequence[HttpFilter], ctx: RequestContext, response: ResponseHead) -> None:
    """Run the response path, last filter first."""
    for f in reversed(chain):
        f.on_response(ctx, response)
