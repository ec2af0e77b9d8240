"""Filter chains: building from rule structs, the registry, and running both paths."""

from __future__ import annotations

import pytest

from gateway.codec.messages import RequestHead, ResponseHead
from gateway.config.snapshot import (
    HeaderModifier,
    HTTPRouteConfig,
    Listener,
    PathMatch,
    PathModifier,
    RequestHeaderModifierFilter,
    RequestMirrorFilter,
    RequestRedirectFilter,
    ResponseHeaderModifierFilter,
    RouteMatch,
    RouteRule,
    URLRewriteFilter,
    WeightedBackend,
)
from gateway.filters import chain as chain_module
from gateway.filters.base import LocalReply, RequestContext
from gateway.filters.chain import (
    build_filters,
    build_route_table,
    register,
    run_request,
    run_response,
)
from gateway.filters.request_header_modifier import RequestHeaderModifier
from gateway.filters.request_mirror import RequestMirror
from gateway.filters.request_redirect import RequestRedirect
from gateway.filters.response_header_modifier import ResponseHeaderModifier
from gateway.filters.url_rewrite import URLRewrite


def ctx(path: str = "/", matched_prefix: str | None = None) -> RequestContext:
    return RequestContext(
        request=RequestHead("GET", path, "gw.example", [(b"host", b"gw.example")]),
        matched_prefix=matched_prefix,
    )


def set_response(name: str, value: str) -> ResponseHeaderModifierFilter:
    return ResponseHeaderModifierFilter(modifier=HeaderModifier(set=((name, value),)))


def test_build_filters_maps_each_struct_in_order() -> None:
    rule = RouteRule(
        filters=(
            RequestHeaderModifierFilter(modifier=HeaderModifier(add=(("x", "1"),))),
            URLRewriteFilter(hostname="h"),
            RequestMirrorFilter(cluster="m"),
            set_response("y", "1"),
            RequestRedirectFilter(status_code=301),
        )
    )
    built = build_filters(rule)
    assert [type(f) for f in built] == [
        RequestHeaderModifier,
        URLRewrite,
        RequestMirror,
        ResponseHeaderModifier,
        RequestRedirect,
    ]
    assert build_filters(RouteRule()) == ()


def test_build_errors_name_the_filter() -> None:
    rule = RouteRule(
        filters=(RequestMirrorFilter(cluster="m"), RequestRedirectFilter(status_code=200))
    )
    with pytest.raises(ValueError, match=r"^filters\[1\]\.requestRedirect\.statusCode"):
        build_filters(rule)


def test_unregistered_struct_is_a_type_error(monkeypatch: pytest.MonkeyPatch) -> None:
    without = {
        k: v for k, v in chain_module.FILTER_FACTORIES.items() if k is not RequestMirrorFilter
    }
    monkeypatch.setattr(chain_module, "FILTER_FACTORIES", without)
    with pytest.raises(
        TypeError, match=r"filters\[0\]: no filter is registered for RequestMirrorFilter"
    ):
        build_filters(RouteRule(filters=(RequestMirrorFilter(cluster="m"),)))


def test_register_plugs_a_new_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain_module, "FILTER_FACTORIES", dict(chain_module.FILTER_FACTORIES))

    class Deny:
        def __init__(self, config: RequestMirrorFilter) -> None:
            self.cluster = config.cluster

        def on_request(self, ctx: RequestContext) -> LocalReply | None:
            return LocalReply(403, flag="RBAC")

        def on_response(self, ctx: RequestContext, response: ResponseHead) -> None:
            return None

    register(RequestMirrorFilter, Deny)
    (f,) = build_filters(RouteRule(filters=(RequestMirrorFilter(cluster="m"),)))
    assert isinstance(f, Deny)
    reply = run_request((f,), ctx())
    assert reply is not None and reply.status == 403


def test_request_path_stops_at_the_first_reply() -> None:
    chain = build_filters(
        RouteRule(
            filters=(
                RequestHeaderModifierFilter(modifier=HeaderModifier(add=(("x-before", "1"),))),
                RequestRedirectFilter(scheme="https"),
                RequestMirrorFilter(cluster="never"),
            )
        )
    )
    c = ctx("/p?q=1")
    reply = run_request(chain, c)
    assert reply is not None
    assert (reply.status, reply.headers) == (302, [(b"location", b"https://gw.example/p?q=1")])
    assert (b"x-before", b"1") in c.request.headers
    assert c.mirrors == []


def test_request_path_without_reply_runs_everything() -> None:
    chain = build_filters(
        RouteRule(
            filters=(
                URLRewriteFilter(path=PathModifier(type="ReplacePrefixMatch", value="/v2")),
                RequestMirrorFilter(cluster="shadow"),
            )
        )
    )
    c = ctx("/v1/items", matched_prefix="/v1")
    assert run_request(chain, c) is None
    assert c.request.path == "/v2/items"
    assert c.mirrors == ["shadow"]


def test_response_path_runs_in_reverse() -> None:
    chain = build_filters(
        RouteRule(filters=(set_response("x", "first"), set_response("x", "second")))
    )
    response = ResponseHead(200, [])
    run_response(chain, ctx(), response)
    # The first filter of the rule runs last on the way back, so its value stays.
    assert response.headers == [(b"x", b"first")]


def test_from_route_table_to_chain_backend_and_timeouts() -> None:
    rule = RouteRule(
        matches=(RouteMatch(path=PathMatch(value="/api/")),),
        filters=(
            URLRewriteFilter(path=PathModifier(type="ReplacePrefixMatch", value="/")),
            set_response("x-served-by", "isthmus"),
        ),
        backends=(WeightedBackend(cluster="ns/api:80", weight=1),),
        request_timeout_s=10.0,
    )
    route = HTTPRouteConfig(kind="HTTPRoute", namespace="ns", name="api", rules=(rule,))
    listener = Listener(
        gateway="ns/gw", name="http", port=80, protocol="HTTP", http_routes=(route,)
    )
    table = build_route_table([listener])

    c = ctx("/api/users?id=7")
    result = table.match(c.request.authority, c.request.path, c.request.method, c.request.headers)
    assert result is not None
    c.matched_prefix = result.matched_prefix
    compiled = result.rule
    assert run_request(compiled.filters, c) is None
    assert c.request.path == "/users?id=7"
    assert compiled.pick_backend(0.3) == "ns/api:80"
    assert compiled.request_timeout_s == 10.0
    response = ResponseHead(200, [])
    run_response(compiled.filters, c, response)
    assert response.headers == [(b"x-served-by", b"isthmus")]
