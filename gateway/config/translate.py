"""Translate validated routes into snapshot route configs.

Called by ``gateway.config.compile`` once per route, before attachment; the hostnames are
the route's own and ``gateway.config.attach`` intersects them per listener. Backend and mirror
references are resolved through :class:`~gateway.config.refs.Resolver`, and so are
ExtensionRef filters (``isthmus.dev`` RateLimit and Fault, in the route's namespace).

GRPCRoute method matches become path matches on ``/package.Service/Method``: service and
method give an Exact path, a service alone a PathPrefix ``/package.Service/``, a method alone
or a RegularExpression match a regular expression meant to match the whole path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gateway.config.kinds import Fault, GRPCRoute, HTTPRoute, RateLimit, TLSRoute
from gateway.config.kinds.grpcroute import GRPCMethodMatchSpec, GRPCRouteFilterSpec
from gateway.config.kinds.httproute import (
    HTTPRouteFilterSpec,
    HTTPRouteMatchSpec,
    HTTPRouteRetry,
    PathModifierSpec,
    timeout_seconds,
)
from gateway.config.kinds.meta import parse_duration
from gateway.config.kinds.route_parts import BackendRef, ExtensionRefSpec, HeaderModifierSpec
from gateway.config.refs import Resolver
from gateway.config.schema import item, join
from gateway.config.snapshot import (
    HeaderMatch,
    HeaderModifier,
    HTTPRouteConfig,
    PathMatch,
    PathModifier,
    QueryMatch,
    RequestHeaderModifierFilter,
    RequestMirrorFilter,
    RequestRedirectFilter,
    ResponseHeaderModifierFilter,
    RetryPolicy,
    RouteFilter,
    RouteMatch,
    RouteRule,
    TLSRouteConfig,
    UnresolvedFilter,
    URLRewriteFilter,
    WeightedBackend,
)

_ANY_SEGMENT = "[^/]+"


def http_route_config(route: HTTPRoute, resolver: Resolver) -> HTTPRouteConfig:
    rules = []
    for i, rule in enumerate(route.spec.rules):
        path = item("spec.rules", i)
        timeouts = rule.timeouts
        rules.append(
            RouteRule(
                matches=tuple(_http_match(m) for m in rule.matches) or RouteRule().matches,
                filters=_filters(route, path, rule.filters, resolver),
                backends=_backends(route, path, rule.backend_refs, resolver),
                request_timeout_s=timeout_seconds(timeouts.request if timeouts else None),
                backend_request_timeout_s=timeout_seconds(
                    timeouts.backend_request if timeouts else None
                ),
                retry=_retry(rule.retry),
            )
        )
    return HTTPRouteConfig(
        kind="HTTPRoute",
        namespace=route.namespace,
        name=route.name,
        hostnames=route.spec.hostnames,
        rules=tuple(rules),
        creation_timestamp=route.metadata.creation_timestamp,
    )


def _retry(spec: HTTPRouteRetry | None) -> RetryPolicy | None:
    """``retry`` for the snapshot; ``attempts: 0`` turns retries off. Unset ``attempts``
    means one retry (the number is left to implementations; Envoy's default is one)."""
    if spec is None:
        return None
    retries = 1 if spec.attempts is None else spec.attempts
    if retries == 0:
        return None
    base = parse_duration(spec.backoff) if spec.backoff else RetryPolicy().backoff_base_s
    return RetryPolicy(retries=retries, codes=tuple(sorted(set(spec.codes))), backoff_base_s=base)


def grpc_route_config(route: GRPCRoute, resolver: Resolver) -> HTTPRouteConfig:
    rules = []
    for i, rule in enumerate(route.spec.rules):
        path = item("spec.rules", i)
        matches = tuple(
            RouteMatch(
                path=grpc_path_match(m.method),
                headers=tuple(
                    HeaderMatch(name=h.name.lower(), value=h.value, type=h.type) for h in m.headers
                ),
            )
            for m in rule.matches
        )
        rules.append(
            RouteRule(
                matches=matches or RouteRule().matches,
                filters=_filters(route, path, rule.filters, resolver),
                backends=_backends(route, path, rule.backend_refs, resolver),
            )
        )
    return HTTPRouteConfig(
        kind="GRPCRoute",
        namespace=route.namespace,
        name=route.name,
        hostnames=route.spec.hostnames,
        rules=tuple(rules),
        creation_timestamp=route.metadata.creation_timestamp,
    )


def tls_route_config(route: TLSRoute, resolver: Resolver) -> TLSRouteConfig:
    backends: tuple[WeightedBackend, ...] = ()
    for i, rule in enumerate(route.spec.rules):
        backends += _backends(route, item("spec.rules", i), rule.backend_refs, resolver)
    return TLSRouteConfig(
        namespace=route.namespace,
        name=route.name,
        hostnames=route.spec.hostnames,
        backends=backends,
    )


def grpc_path_match(match: GRPCMethodMatchSpec | None) -> PathMatch:
    """The HTTP/2 ``:path`` match equivalent to a GRPCRoute method match."""
    if match is None:
        return PathMatch()
    service = match.service.lstrip(".") if match.service else None
    method = match.method
    if match.type == "RegularExpression":
        return PathMatch(
            type="RegularExpression",
            value=f"/(?:{service or _ANY_SEGMENT})/(?:{method or _ANY_SEGMENT})",
        )
    if service and method:
        return PathMatch(type="Exact", value=f"/{service}/{method}")
    if service:
        return PathMatch(type="PathPrefix", value=f"/{service}/")
    return PathMatch(type="RegularExpression", value=f"/{_ANY_SEGMENT}/{re.escape(method or '')}")


def _http_match(match: HTTPRouteMatchSpec) -> RouteMatch:
    path = match.path
    return RouteMatch(
        path=PathMatch(type=path.type, value=path.value) if path else PathMatch(),
        headers=tuple(
            HeaderMatch(name=h.name.lower(), value=h.value, type=h.type) for h in match.headers
        ),
        query=tuple(
            QueryMatch(name=q.name, value=q.value, type=q.type) for q in match.query_params
        ),
        method=match.method,
    )


def _backends(
    route: HTTPRoute | GRPCRoute | TLSRoute,
    rule_path: str,
    refs: tuple[BackendRef, ...],
    resolver: Resolver,
) -> tuple[WeightedBackend, ...]:
    return tuple(
        WeightedBackend(
            cluster=resolver.backend(route, item(join(rule_path, "backendRefs"), i), ref),
            weight=ref.weight,
        )
        for i, ref in enumerate(refs)
    )


def _filters(
    route: HTTPRoute | GRPCRoute,
    rule_path: str,
    specs: Sequence[HTTPRouteFilterSpec | GRPCRouteFilterSpec],
    resolver: Resolver,
) -> tuple[RouteFilter, ...]:
    filters: list[RouteFilter] = []
    for i, spec in enumerate(specs):
        if spec.request_header_modifier is not None:
            filters.append(
                RequestHeaderModifierFilter(modifier=_modifier(spec.request_header_modifier))
            )
        elif spec.response_header_modifier is not None:
            filters.append(
                ResponseHeaderModifierFilter(modifier=_modifier(spec.response_header_modifier))
            )
        elif spec.request_mirror is not None:
            mirror = spec.request_mirror
            path = join(join(item(join(rule_path, "filters"), i), "requestMirror"), "backendRef")
            cluster = resolver.backend(route, path, mirror.backend_ref)
            if cluster:  # an unresolved mirror is dropped: there is nothing to copy to
                filters.append(RequestMirrorFilter(cluster=cluster, percent=mirror.percent_value))
        elif spec.extension_ref is not None:
            path = join(item(join(rule_path, "filters"), i), "extensionRef")
            filters.append(_extension_filter(route, rule_path, path, spec.extension_ref, resolver))
        elif isinstance(spec, HTTPRouteFilterSpec):
            filters.extend(_http_only_filter(spec))
    return tuple(filters)


def _extension_filter(
    route: HTTPRoute | GRPCRoute,
    rule_path: str,
    path: str,
    ref: ExtensionRefSpec,
    resolver: Resolver,
) -> RouteFilter:
    """A RateLimit or Fault filter; a missing object is not skipped but answers 500, as the
    Gateway API requires of an ExtensionRef that cannot be resolved."""
    target = resolver.extension(route, path, ref)
    if isinstance(target, RateLimit):
        return target.filter(scope=f"{route.kind_name} {route.namespace}/{route.name} {rule_path}")
    if isinstance(target, Fault):
        return target.filter()
    return UnresolvedFilter(target=f"{ref.kind} {route.namespace}/{ref.name}")


def _http_only_filter(spec: HTTPRouteFilterSpec) -> list[RouteFilter]:
    if spec.request_redirect is not None:
        redirect = spec.request_redirect
        return [
            RequestRedirectFilter(
                scheme=redirect.scheme,
                hostname=redirect.hostname,
                path=_path_modifier(redirect.path),
                port=redirect.port,
                status_code=redirect.status_code,
            )
        ]
    if spec.url_rewrite is not None:
        rewrite = spec.url_rewrite
        return [URLRewriteFilter(hostname=rewrite.hostname, path=_path_modifier(rewrite.path))]
    return []


def _modifier(spec: HeaderModifierSpec) -> HeaderModifier:
    return HeaderModifier(
        set=tuple((h.name, h.value) for h in spec.set),
        add=tuple((h.name, h.value) for h in spec.add),
        remove=tuple(name.lower() for name in spec.remove),
    )


def _path_modifier(spec: PathModifierSpec | None) -> PathModifier | None:
    return None if spec is None else PathModifier(type=spec.type, value=spec.value)
