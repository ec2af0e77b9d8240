"""RouteTable: host selection, precedence and backends, with Gateway API conformance cases."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.snapshot import (
    HeaderMatch,
    HTTPRouteConfig,
    Listener,
    PathMatch,
    QueryMatch,
    RouteMatch,
    RouteRule,
    WeightedBackend,
)
from gateway.routing.table import CompiledRule, RouteTable

NS = "gateway-conformance-infra"


def prefix(value: str, **kw: object) -> RouteMatch:
    return RouteMatch(path=PathMatch(value=value), **kw)  # type: ignore[arg-type]


def hdr(name: str, value: str) -> HeaderMatch:
    return HeaderMatch(name=name, value=value)


def qp(name: str, value: str) -> QueryMatch:
    return QueryMatch(name=name, value=value)


def rule(*matches: RouteMatch, to: str = "v1") -> RouteRule:
    return RouteRule(
        matches=matches or (RouteMatch(path=PathMatch()),),
        backends=(WeightedBackend(cluster=to),),
    )


def route(
    name: str,
    *rules: RouteRule,
    hostnames: Sequence[str] = (),
    ns: str = NS,
    ts: str = "",
) -> HTTPRouteConfig:
    return HTTPRouteConfig(
        kind="HTTPRoute",
        namespace=ns,
        name=name,
        hostnames=tuple(hostnames),
        rules=rules,
        creation_timestamp=ts,
    )


def listener(
    *routes: HTTPRouteConfig, hostname: str | None = None, name: str = "http", port: int = 80
) -> Listener:
    return Listener(
        gateway=f"{NS}/gw",
        name=name,
        port=port,
        protocol="HTTP",
        hostname=hostname,
        http_routes=routes,
    )


def table(*listeners: Listener) -> RouteTable[object]:
    return RouteTable.build(listeners)


Request = tuple[str, str, str, list[tuple[bytes, bytes]]]  # authority, path, method, headers


def backend(
    t: RouteTable[object],
    path: str,
    *,
    host: str = "example.com",
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> str | None:
    hs = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    result = t.match(host, path, method, hs)
    return None if result is None else result.rule.pick_backend(0.0)


# --- Gateway API conformance: HTTPRouteMatching ------------------------------------------

MATCHING = table(
    listener(
        route(
            "matching",
            rule(prefix("/"), RouteMatch(headers=(hdr("version", "one"),)), to="v1"),
            rule(prefix("/v2"), RouteMatch(headers=(hdr("version", "two"),)), to="v2"),
        )
    )
)


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        ("/", {}, "v1"),
        ("/example", {}, "v1"),
        ("/", {"Version": "one"}, "v1"),
        ("/v2", {}, "v2"),
        ("/v2/example", {}, "v2"),
        ("/", {"Version": "two"}, "v2"),
        ("/v2example", {}, "v1"),
    ],
)
def test_conformance_matching(path: str, headers: dict[str, str], expected: str) -> None:
    assert backend(MATCHING, path, headers=headers) == expected


# --- HTTPRouteHeaderMatching ---------------------------------------------------------------

HEADERS = table(
    listener(
        route(
            "header-matching",
            rule(RouteMatch(headers=(hdr("version", "one"),)), to="v1"),
            rule(RouteMatch(headers=(hdr("version", "two"),)), to="v2"),
            rule(RouteMatch(headers=(hdr("version", "two"), hdr("color", "orange"))), to="v1"),
            rule(
                RouteMatch(headers=(hdr("color", "blue"),)),
                RouteMatch(headers=(hdr("color", "green"),)),
                to="v1",
            ),
            rule(
                RouteMatch(headers=(hdr("color", "red"),)),
                RouteMatch(headers=(hdr("color", "yellow"),)),
                to="v2",
            ),
        )
    )
)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Version": "one"}, "v1"),
        ({"Version": "two"}, "v2"),
        ({"Version": "two", "Color": "orange"}, "v1"),
        ({"Version": "two", "Color": "blue"}, "v2"),
        ({"Color": "orange"}, None),
        ({"Some-Other-Header": "one"}, None),
        ({"Color": "blue"}, "v1"),
        ({"Color": "green"}, "v1"),
        ({"Color": "red"}, "v2"),
        ({"Color": "yellow"}, "v2"),
        ({"Color": "purple"}, None),
    ],
)
def test_conformance_header_matching(headers: dict[str, str], expected: str | None) -> None:
    assert backend(HEADERS, "/", headers=headers) == expected


# --- HTTPRouteQueryParamMatching -----------------------------------------------------------

QUERY = table(
    listener(
        route(
            "query-param-matching",
            rule(RouteMatch(query=(qp("animal", "whale"),)), to="v1"),
            rule(RouteMatch(query=(qp("animal", "dolphin"),)), to="v2"),
            rule(
                RouteMatch(query=(qp("animal", "dolphin"), qp("color", "blue"))),
                RouteMatch(query=(qp("ANIMAL", "Whale"),)),
                to="v3",
            ),
            rule(prefix("/path1", query=(qp("animal", "whale"),)), to="v1"),
            rule(
                RouteMatch(headers=(hdr("version", "one"),), query=(qp("animal", "whale"),)),
                to="v2",
            ),
            rule(
                prefix("/path2", headers=(hdr("version", "two"),), query=(qp("animal", "whale"),)),
                to="v3",
            ),
            rule(
                prefix("/path3", query=(qp("animal", "shark"),)),
                prefix(
                    "/path4", headers=(hdr("version", "three"),), query=(qp("animal", "kraken"),)
                ),
                to="v1",
            ),
            rule(prefix("/path5"), to="v1"),
            rule(RouteMatch(query=(qp("animal", "hydra"),)), to="v2"),
            rule(RouteMatch(headers=(hdr("version", "four"),)), to="v3"),
        )
    )
)


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        ("/?animal=whale", {}, "v1"),
        ("/?animal=dolphin", {}, "v2"),
        ("/?animal=dolphin&color=blue", {}, "v3"),
        ("/?ANIMAL=Whale", {}, "v3"),
        ("/?animal=whale&otherparam=irrelevant", {}, "v1"),
        ("/?animal=dolphin&color=yellow", {}, "v2"),
        ("/?color=blue", {}, None),
        ("/?animal=dog", {}, None),
        ("/?animal=whaledolphin", {}, None),
        ("/", {}, None),
        ("/path1?animal=whale", {}, "v1"),
        ("/?animal=whale", {"version": "one"}, "v2"),
        ("/path2?animal=whale", {"version": "two"}, "v3"),
        ("/path3?animal=shark", {}, "v1"),
        ("/path4?animal=kraken", {"version": "three"}, "v1"),
        ("/?animal=shark", {}, None),
        ("/path4?animal=kraken", {}, None),
        ("/path5?animal=hydra", {}, "v1"),
        ("/?animal=hydra", {"version": "four"}, "v3"),
    ],
)
def test_conformance_query_param_matching(
    path: str, headers: dict[str, str], expected: str | None
) -> None:
    assert backend(QUERY, path, headers=headers) == expected


# --- HTTPRouteMethodMatching ---------------------------------------------------------------

METHOD = table(
    listener(
        route(
            "method-matching",
            rule(RouteMatch(method="POST"), to="v1"),
            rule(RouteMatch(method="GET"), to="v2"),
            rule(prefix("/path1", method="GET"), to="v1"),
            rule(RouteMatch(headers=(hdr("version", "one"),), method="PUT"), to="v2"),
            rule(prefix("/path2", headers=(hdr("version", "two"),), method="POST"), to="v3"),
            rule(
                prefix("/path3", method="PATCH"),
                prefix("/path4", headers=(hdr("version", "three"),), method="DELETE"),
                to="v1",
            ),
            rule(prefix("/path5"), to="v1"),
            rule(RouteMatch(method="PATCH"), to="v2"),
            rule(RouteMatch(headers=(hdr("version", "four"),)), to="v3"),
        )
    )
)


@pytest.mark.parametrize(
    ("method", "path", "headers", "expected"),
    [
        ("POST", "/", {}, "v1"),
        ("GET", "/", {}, "v2"),
        ("HEAD", "/", {}, None),
        ("GET", "/path1", {}, "v1"),
        ("PUT", "/", {"version": "one"}, "v2"),
        ("POST", "/path2", {"version": "two"}, "v3"),
        ("PATCH", "/path3", {}, "v1"),
        ("DELETE", "/path4", {"version": "three"}, "v1"),
        ("PUT", "/", {}, None),
        ("DELETE", "/path4", {}, None),
        ("PATCH", "/path5", {}, "v1"),
        ("PATCH", "/", {"version": "four"}, "v2"),
    ],
)
def test_conformance_method_matching(
    method: str, path: str, headers: dict[str, str], expected: str | None
) -> None:
    assert backend(METHOD, path, method=method, headers=headers) == expected


# --- GatewayHTTPListenerIsolation ----------------------------------------------------------

ISOLATION_LISTENERS = [
    ("empty-hostname", None),
    ("wildcard-example-com", "*.example.com"),
    ("wildcard-foo-example-com", "*.foo.example.com"),
    ("abc-foo-example-com", "abc.foo.example.com"),
]
ALL_HOSTNAMES = ("bar.com", "*.example.com", "*.foo.example.com", "abc.foo.example.com")


def isolation_table(with_route_hostnames: bool) -> RouteTable[object]:
    out = []
    for name, hostname in ISOLATION_LISTENERS:
        # The loader intersects route and listener hostnames; the table clips them again.
        r = route(
            f"attaches-to-{name}",
            rule(prefix(f"/{name}")),
            hostnames=ALL_HOSTNAMES if with_route_hostnames else (),
        )
        out.append(listener(r, hostname=hostname, name=name))
    return table(*out)


@pytest.mark.parametrize("with_route_hostnames", [False, True])
@pytest.mark.parametrize(
    ("host", "serves"),
    [
        ("bar.com", "empty-hostname"),
        ("bar.example.com", "wildcard-example-com"),
        ("bar.foo.example.com", "wildcard-foo-example-com"),
        ("abc.foo.example.com", "abc-foo-example-com"),
    ],
)
def test_conformance_listener_isolation(with_route_hostnames: bool, host: str, serves: str) -> None:
    t = isolation_table(with_route_hostnames)
    for name, _ in ISOLATION_LISTENERS:
        expected = "v1" if name == serves else None
        assert backend(t, f"/{name}", host=host) == expected, (host, name)


# --- HTTPRouteListenerHostnameMatching -----------------------------------------------------


def test_conformance_listener_hostname_matching() -> None:
    t = table(
        listener(route("backend-v1", rule(to="v1")), hostname="bar.com", name="listener-1"),
        listener(route("backend-v2", rule(to="v2")), hostname="foo.bar.com", name="listener-2"),
        listener(route("backend-v3", rule(to="v3")), hostname="*.bar.com", name="listener-3"),
        listener(route("backend-v3", rule(to="v3")), hostname="*.foo.com", name="listener-4"),
    )
    cases = {
        "bar.com": "v1",
        "foo.bar.com": "v2",
        "baz.bar.com": "v3",
        "boo.bar.com": "v3",
        "multiple.prefixes.bar.com": "v3",
        "multiple.prefixes.foo.com": "v3",
        "foo.com": None,
        "no.matching.host": None,
        "BAR.com:80": "v1",
    }
    for host, expected in cases.items():
        assert backend(t, "/", host=host) == expected, host


# --- hostname precedence inside one listener -------------------------------------------


def test_route_hostname_precedence_without_fall_through() -> None:
    t = table(
        listener(
            route("exact", rule(prefix("/exact"), to="exact"), hostnames=("a.b.example.com",)),
            route("long", rule(prefix("/long"), to="long"), hostnames=("*.b.example.com",)),
            route("short", rule(prefix("/short"), to="short"), hostnames=("*.example.com",)),
            route("none", rule(to="none")),
        )
    )
    assert backend(t, "/exact", host="a.b.example.com") == "exact"
    assert backend(t, "/long", host="a.b.example.com") is None  # no fall-through
    assert backend(t, "/long", host="c.b.example.com") == "long"
    assert backend(t, "/short", host="c.example.com") == "short"
    assert backend(t, "/short", host="c.b.example.com") is None
    assert backend(t, "/anything", host="example.com") == "none"
    assert backend(t, "/anything", host="[::1]:8080") == "none"
    assert backend(t, "/anything", host="") == "none"


def test_listener_hostname_applies_to_routes_without_hostnames() -> None:
    t = table(listener(route("r", rule()), hostname="a.com"))
    assert backend(t, "/", host="a.com") == "v1"
    assert backend(t, "/", host="b.com") is None


def test_tls_listeners_are_ignored() -> None:
    tls = Listener(gateway="g", name="tls", port=443, protocol="TLS", hostname="a.com")
    https = Listener(
        gateway="g", name="https", port=443, protocol="HTTPS", http_routes=(route("r", rule()),)
    )
    t = RouteTable.build([tls, https])
    assert backend(t, "/", host="a.com") == "v1"


# --- precedence across routes and rules ----------------------------------------------------


def test_exact_beats_longer_prefix_and_regex() -> None:
    t = table(
        listener(
            route("p", rule(prefix("/a/b/c/d"), to="prefix")),
            route(
                "e", rule(RouteMatch(path=PathMatch(type="Exact", value="/a/b/c/d")), to="exact")
            ),
            route(
                "r",
                rule(RouteMatch(path=PathMatch(type="RegularExpression", value="/a/.*")), to="re"),
            ),
        )
    )
    assert backend(t, "/a/b/c/d") == "exact"
    assert backend(t, "/a/b/c/d/e") == "prefix"
    assert backend(t, "/a/x") == "re"


def test_oldest_route_then_alphabetical_then_rule_order() -> None:
    older = route("zzz", rule(to="older"), ts="2024-01-01T00:00:00Z")
    newer = route("aaa", rule(to="newer"), ts="2024-06-01T00:00:00Z")
    assert backend(table(listener(newer, older)), "/") == "older"
    same_a = route("a", rule(to="a"), ns="ns", ts="2024-01-01T00:00:00Z")
    same_b = route("b", rule(to="b"), ns="ns", ts="2024-01-01T00:00:00Z")
    assert backend(table(listener(same_b, same_a)), "/") == "a"
    other_ns = route("a", rule(to="ns0"), ns="aaa", ts="2024-01-01T00:00:00Z")
    assert backend(table(listener(same_a, other_ns)), "/") == "ns0"
    two_rules = route("r", rule(to="first"), rule(to="second"))
    assert backend(table(listener(two_rules)), "/") == "first"


def test_result_carries_route_rule_and_matched_prefix() -> None:
    r = route("r", rule(prefix("/x")), rule(prefix("/foo/"), to="foo"), ns="ns")
    t = table(listener(r))
    result = t.match("h", "/foo/bar?q=1", "GET", [])
    assert result is not None
    assert (result.route_kind, result.route_namespace, result.route_name) == (
        "HTTPRoute",
        "ns",
        "r",
    )
    assert result.rule_index == 1
    assert result.matched_prefix == "/foo"
    assert result.rule.rule is r.rules[1]
    assert result.rule.backends == (WeightedBackend(cluster="foo"),)
    exact = table(listener(route("e", rule(RouteMatch(path=PathMatch(type="Exact", value="/e"))))))
    hit = exact.match("h", "/e", "GET", [])
    assert hit is not None and hit.matched_prefix is None


def test_results_are_shared_not_allocated_per_request() -> None:
    t = table(listener(route("r", rule(prefix("/a")), rule()), hostname="a.com"))
    assert t.match("a.com", "/a/1", "GET", []) is t.match("a.com", "/a/2", "GET", [])


def test_fast_path_single_catch_all() -> None:
    t = table(listener(route("r", rule())))
    vhost = t.virtual_host("whatever")
    assert vhost.unconditional is not None
    assert t.match("x", "*", "OPTIONS", []) is vhost.unconditional


def test_timeouts_and_filters_are_on_the_compiled_rule() -> None:
    calls: list[RouteRule] = []

    def build_filters(r: RouteRule) -> tuple[str, ...]:
        calls.append(r)
        return ("f1", "f2")

    rr = RouteRule(request_timeout_s=5.0, backend_request_timeout_s=1.5)
    shared = route("r", rr, hostnames=("a.com", "b.com"))
    t = RouteTable.build(
        [listener(shared, name="l1", hostname=None), listener(shared, name="l2", hostname="a.com")],
        build_filters,
    )
    assert len(calls) == 1  # built once, whatever the hosts and listeners
    result = t.match("a.com", "/", "GET", [])
    assert result is not None
    assert result.rule.filters == ("f1", "f2")
    assert result.rule.request_timeout_s == 5.0
    assert result.rule.backend_request_timeout_s == 1.5
    assert t.rules == (result.rule,)


def test_build_errors_name_the_route() -> None:
    bad = route("bad", rule(RouteMatch(path=PathMatch(type="RegularExpression", value="("))))
    with pytest.raises(ValueError, match=r"HTTPRoute .*/bad rules\[0\]\.matches\[0\]: path\.value"):
        table(listener(bad))
    with pytest.raises(ValueError, match="one port"):
        table(listener(port=80), listener(port=81, name="other"))


def test_host_cache_is_bounded() -> None:
    t = table(listener(route("r", rule()), hostname="a.com"))
    for i in range(5000):
        t.match(f"h{i}.com", "/", "GET", [])
    assert len(t._cache) <= 4096
    assert backend(t, "/", host="a.com") == "v1"


def test_repr() -> None:
    t = table(listener(route("r", rule(), hostnames=("a.com", "*.b.com"))))
    assert repr(t) == "<RouteTable port=80 [listeners: 1 | hosts: 2 | rules: 1]>"


# --- weighted backends ---------------------------------------------------------------------


def compiled(*backends: tuple[str, int]) -> CompiledRule[object]:
    r = RouteRule(backends=tuple(WeightedBackend(cluster=c, weight=w) for c, w in backends))
    t = table(listener(route("r", r)))
    result = t.match("h", "/", "GET", [])
    assert result is not None
    return result.rule


def test_pick_backend_weights_are_proportional() -> None:
    rule_ = compiled(("a", 1), ("b", 3), ("zero", 0))
    draws = [i / 1000 for i in range(1000)]
    counts = Counter(rule_.pick_backend(r) for r in draws)
    assert counts == {"a": 250, "b": 750}
    assert rule_.pick_backend(0.999999) == "b"
    assert rule_.pick_backend(1.0) == "b"


@pytest.mark.parametrize(
    ("backends", "expected"),
    [
        ((), None),
        ((("a", 0), ("b", 0)), None),
        ((("", 1),), ""),
        ((("a", 5),), "a"),
        ((("a", 0), ("b", 2)), "b"),
    ],
)
def test_pick_backend_edges(backends: tuple[tuple[str, int], ...], expected: str | None) -> None:
    assert compiled(*backends).pick_backend(0.5) == expected


# --- property: precedence does not depend on input order ----------------------------------

PATHS = [
    None,
    PathMatch(value="/"),
    PathMatch(value="/a"),
    PathMatch(value="/a/b"),
    PathMatch(value="/b/"),
    PathMatch(type="Exact", value="/a"),
    PathMatch(type="Exact", value="/"),
    PathMatch(type="RegularExpression", value="/a/.*"),
]
match_strategy = st.builds(
    RouteMatch,
    path=st.sampled_from(PATHS),
    method=st.sampled_from([None, "GET"]),
    headers=st.sampled_from([(), (hdr("x", "1"),), (hdr("x", "1"), hdr("y", "1"))]),
    query=st.sampled_from([(), (qp("q", "1"),)]),
)
rule_strategy = st.builds(
    lambda ms, to: RouteRule(matches=tuple(ms), backends=(WeightedBackend(cluster=to),)),
    st.lists(match_strategy, min_size=1, max_size=2),
    st.sampled_from(["c1", "c2", "c3"]),
)


@st.composite
def route_sets(draw: st.DrawFn) -> list[HTTPRouteConfig]:
    n = draw(st.integers(min_value=1, max_value=5))
    routes = []
    for i in range(n):
        routes.append(
            HTTPRouteConfig(
                kind="HTTPRoute",
                namespace=draw(st.sampled_from(["ns-a", "ns-b"])),
                name=f"r{i}",
                hostnames=draw(st.sampled_from([(), ("a.com",), ("*.com",), ("a.com", "*.com")])),
                rules=tuple(draw(st.lists(rule_strategy, min_size=1, max_size=3))),
                creation_timestamp=draw(
                    st.sampled_from(["", "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"])
                ),
            )
        )
    return routes


PROBES: list[Request] = [
    (host, path, method, headers)
    for host in ("a.com", "b.com", "other.net")
    for path in ("/", "/a", "/a/b", "/a/c?q=1", "/ab", "/b", "/b/x?q=1", "/z?q=1", "*")
    for method in ("GET", "POST")
    for headers in ([], [(b"x", b"1")], [(b"x", b"1"), (b"y", b"1")])
]


def outcome(t: RouteTable[object]) -> list[tuple[str, str, int] | None]:
    out: list[tuple[str, str, int] | None] = []
    for host, path, method, headers in PROBES:
        r = t.match(host, path, method, headers)
        out.append(None if r is None else (r.route_namespace, r.route_name, r.rule_index))
    return out


@settings(max_examples=60, deadline=None)
@given(routes=route_sets(), data=st.data())
def test_precedence_is_independent_of_input_order(
    routes: list[HTTPRouteConfig], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(routes))
    split = data.draw(st.integers(min_value=0, max_value=len(routes)))
    baseline = outcome(table(listener(*routes)))
    # Same routes, another order, spread over two listeners sharing the port.
    other = table(listener(*shuffled[:split], name="l1"), listener(*shuffled[split:], name="l2"))
    assert outcome(other) == baseline


@settings(max_examples=60, deadline=None)
@given(routes=route_sets())
def test_path_index_gives_the_same_answers_as_the_plain_walk(
    routes: list[HTTPRouteConfig],
) -> None:
    import gateway.routing.table as table_module

    indexed_at = table_module._INDEX_MIN_ENTRIES
    try:
        table_module._INDEX_MIN_ENTRIES = 1
        indexed = outcome(table(listener(*routes)))
        table_module._INDEX_MIN_ENTRIES = 10**9
        walked = outcome(table(listener(*routes)))
    finally:
        table_module._INDEX_MIN_ENTRIES = indexed_at
    assert indexed == walked
