"""gateway.config.compile: listeners, attachment, references, clusters and determinism."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from gateway.config.attach import intersect_hostnames
from gateway.config.compile import compile_resources, load_snapshot
from gateway.config.errors import ConfigError
from gateway.config.loader import load_directory
from gateway.config.snapshot import (
    Endpoint,
    Listener,
    RequestMirrorFilter,
    RetryPolicy,
    Snapshot,
    UnresolvedRef,
    WeightedBackend,
    decode,
    encode,
)

Writer = Callable[[str, str], Path]


def listener(snapshot: Snapshot, name: str) -> Listener:
    found = [lst for b in snapshot.ports for lst in b.listeners if lst.name == name]
    assert len(found) >= 1, f"no listener {name}"
    return found[0]


def doc(text: str) -> str:
    return textwrap.dedent(text).strip("\n") + "\n---\n"


def gateway(listeners: str, name: str = "gw", namespace: str = "default", extra: str = "") -> str:
    return doc(
        f"""
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          gatewayClassName: isthmus
          {extra}
          listeners: {listeners}
        """
    )


def http_route(
    name: str,
    spec: str,
    namespace: str = "default",
    created: str = "",
    kind: str = "HTTPRoute",
) -> str:
    stamp = f", creationTimestamp: '{created}'" if created else ""
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    return (
        f"apiVersion: gateway.networking.k8s.io/v1\nkind: {kind}\n"
        f"metadata: {{name: {name}, namespace: {namespace}{stamp}}}\nspec:\n{body}\n---\n"
    )


def service(name: str, namespace: str = "default", port: int = 80) -> str:
    return doc(
        f"""
        apiVersion: v1
        kind: Service
        metadata: {{name: {name}, namespace: {namespace}}}
        spec: {{ports: [{{port: {port}}}]}}
        """
    )


def grant(namespace: str, from_kind: str, from_ns: str, to_kind: str, name: str = "") -> str:
    to_name = f", name: {name}" if name else ""
    return doc(
        f"""
        apiVersion: gateway.networking.k8s.io/v1beta1
        kind: ReferenceGrant
        metadata: {{name: allow-{from_ns}, namespace: {namespace}}}
        spec:
          from: [{{group: gateway.networking.k8s.io, kind: {from_kind}, namespace: {from_ns}}}]
          to: [{{group: "", kind: {to_kind}{to_name}}}]
        """
    )


def compile_text(write: Writer, text: str) -> Snapshot:
    return load_snapshot(write("config.yaml", text).parent)


HTTP_LISTENER = "[{name: http, port: 80, protocol: HTTP}]"


def test_full_example(full_example: Path) -> None:
    snapshot = load_snapshot(full_example)
    assert [(b.address, b.port, b.protocol) for b in snapshot.ports] == [
        ("0.0.0.0", 8080, "HTTP"),
        ("0.0.0.0", 8443, "HTTPS"),
        ("0.0.0.0", 9443, "TLS"),
    ]
    https = listener(snapshot, "https")
    assert https.gateway == "shop/edge"
    (cert,) = https.certificates
    assert (cert.secret, cert.hostname) == ("shop/www-cert", "www.example.com")
    assert cert.cert_pem.startswith("-----BEGIN CERTIFICATE-----")
    (route,) = https.http_routes
    assert (route.kind, route.namespace, route.name) == ("HTTPRoute", "shop", "web")
    assert route.creation_timestamp == "2024-05-01T10:00:00Z"
    api, old = route.rules
    assert api.backends == (WeightedBackend("shop/web:80", 3), WeightedBackend("", 1))
    assert (api.request_timeout_s, api.backend_request_timeout_s) == (10.0, 0.5)
    assert [f.__struct_config__.tag for f in api.filters] == ["RequestHeaderModifier", "URLRewrite"]
    assert old.filters[0].__struct_config__.tag == "RequestRedirect"
    assert listener(snapshot, "http").http_routes == (route,)
    (tls_route,) = listener(snapshot, "passthrough").tls_routes
    assert tls_route.hostnames == ("db.example.com",)

    web80, web9090 = snapshot.clusters
    assert (web80.name, web80.protocol, web80.lb_policy) == (
        "shop/web:80",
        "http1",
        "LEAST_REQUEST",
    )
    assert web80.endpoints == (
        Endpoint(address="10.0.0.1", port=8080, zone="zone-a"),
        Endpoint(
            address="10.0.0.2",
            port=8080,
            ready=False,
            serving=True,
            terminating=True,
            hostname="web-2",
        ),
        Endpoint(address="10.0.0.3", port=8080),
    )
    assert (web9090.name, web9090.protocol) == ("shop/web:9090", "h2c")
    assert [e.port for e in web9090.endpoints] == [9091, 9091, 9091]

    assert (snapshot.limits.max_header_bytes, snapshot.limits.header_timeout_s) == (32768, 5.0)
    assert snapshot.unresolved == (
        UnresolvedRef(
            source="HTTPRoute shop/web",
            field="spec.rules[0].backendRefs[1]",
            target="Service shop/missing:80",
            reason="Service not found",
        ),
    )
    assert snapshot.version and snapshot.version == snapshot.with_version().version
    assert decode(encode(snapshot)) == snapshot


def test_version_is_deterministic(full_example: Path, tmp_path: Path) -> None:
    first = load_snapshot(full_example)
    assert load_snapshot(full_example) == first
    # The same objects in one file, in another order, give the same snapshot and version.
    texts = [p.read_text() for p in sorted(full_example.rglob("*.y*ml"), reverse=True)]
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "all.yaml").write_text("\n---\n".join(texts))
    assert load_snapshot(merged).version == first.version
    # And a change shows in the version.
    (merged / "extra.yaml").write_text(service("another", "shop"))
    assert load_snapshot(merged).version != first.version


@pytest.mark.parametrize(
    ("listener_host", "route_hosts", "expected"),
    [
        (None, [], ()),
        (None, ["a.example.com"], ("a.example.com",)),
        ("a.example.com", [], ("a.example.com",)),
        ("a.example.com", ["a.example.com", "b.example.com"], ("a.example.com",)),
        (
            "*.example.com",
            ["a.example.com", "a.b.example.com", "example.com"],
            ("a.example.com", "a.b.example.com"),
        ),
        ("a.example.com", ["*.example.com"], ("a.example.com",)),
        ("*.example.com", ["*.foo.example.com"], ("*.foo.example.com",)),
        ("*.foo.example.com", ["*.example.com"], ("*.foo.example.com",)),
        ("*.example.com", ["*.example.com"], ("*.example.com",)),
        ("example.com", ["*.example.com"], None),
        ("a.example.com", ["b.example.com"], None),
        ("*.example.com", ["example.org", "x.example.org"], None),
    ],
)
def test_hostname_intersection(
    listener_host: str | None, route_hosts: list[str], expected: tuple[str, ...] | None
) -> None:
    assert intersect_hostnames(listener_host, route_hosts) == expected


def test_routes_attach_by_hostname(write: Writer) -> None:
    listeners = (
        "[{name: wild, port: 80, protocol: HTTP, hostname: '*.example.com'},"
        " {name: exact, port: 80, protocol: HTTP, hostname: shop.example.org}]"
    )
    snapshot = compile_text(
        write,
        gateway(listeners)
        + http_route(
            "both", "parentRefs: [{name: gw}]\nhostnames: [a.example.com, shop.example.org]"
        )
        + http_route("none", "parentRefs: [{name: gw}]\nhostnames: [other.net]"),
    )
    (wild,) = listener(snapshot, "wild").http_routes
    (exact,) = listener(snapshot, "exact").http_routes
    assert (wild.name, wild.hostnames) == ("both", ("a.example.com",))
    assert (exact.name, exact.hostnames) == ("both", ("shop.example.org",))
    (unresolved,) = snapshot.unresolved
    assert unresolved.source == "HTTPRoute default/none"
    assert unresolved.field == "spec.parentRefs[0]"
    assert "listener wild has hostname *.example.com, which no route hostname intersects" in (
        unresolved.reason
    )


def test_parent_ref_section_name_port_and_allowed_routes(write: Writer) -> None:
    listeners = (
        "[{name: a, port: 80, protocol: HTTP},"
        " {name: b, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}},"
        " {name: c, port: 9090, protocol: HTTP, allowedRoutes: {kinds: [{kind: GRPCRoute}]}}]"
    )
    snapshot = compile_text(
        write,
        gateway(listeners, namespace="infra")
        + http_route("local", "parentRefs: [{name: gw, sectionName: b}]", namespace="infra")
        + http_route("by-port", "parentRefs: [{name: gw, port: 80}]", namespace="infra")
        + http_route("foreign", "parentRefs: [{name: gw, namespace: infra}]", namespace="apps")
        + http_route("typo", "parentRefs: [{name: gw, sectionName: zzz}]", namespace="infra")
        + http_route("lost", "parentRefs: [{name: nope}]", namespace="infra"),
    )
    names = {
        lst.name: [r.name for r in lst.http_routes] for b in snapshot.ports for lst in b.listeners
    }
    # "foreign" comes from another namespace: only listener b (from: All) takes it, and
    # listener c takes GRPCRoutes only.
    assert names == {"a": ["by-port"], "b": ["foreign", "local"], "c": []}
    reasons = {u.source: u.reason for u in snapshot.unresolved}
    assert reasons == {
        "HTTPRoute infra/typo": 'no listener named "zzz"',
        "HTTPRoute infra/lost": "Gateway not found",
    }


def test_routes_are_ordered_by_age_then_name(write: Writer) -> None:
    text = gateway(HTTP_LISTENER)
    for name, created in [
        ("b", "2024-01-02T00:00:00Z"),
        ("a", "2024-01-02T00:00:00Z"),
        ("z", "2023-12-31T00:00:00Z"),
    ]:
        text += http_route(name, "parentRefs: [{name: gw}]", created=created)
    snapshot = compile_text(write, text)
    assert [r.name for r in listener(snapshot, "http").http_routes] == ["z", "a", "b"]


def test_cross_namespace_backend_needs_a_reference_grant(write: Writer) -> None:
    route = http_route(
        "web",
        """
        parentRefs: [{name: gw}]
        rules:
          - backendRefs: [{name: api, namespace: backends, port: 80}]
            filters:
              - type: RequestMirror
                requestMirror: {backendRef: {name: api, namespace: backends, port: 80}, percent: 5}
        """,
        namespace="web",
    )
    base = gateway(HTTP_LISTENER, namespace="web") + service("api", "backends") + route
    without = compile_text(write, base)
    (rule,) = listener(without, "http").http_routes[0].rules
    assert rule.backends == (WeightedBackend(cluster="", weight=1),)
    assert rule.filters == ()  # an unresolved mirror has nowhere to go
    assert {(u.field, u.reason) for u in without.unresolved} == {
        (
            "spec.rules[0].backendRefs[0]",
            "cross-namespace reference not permitted by any ReferenceGrant in backends",
        ),
        (
            "spec.rules[0].filters[0].requestMirror.backendRef",
            "cross-namespace reference not permitted by any ReferenceGrant in backends",
        ),
    }

    wrong_kind = compile_text(write, base + grant("backends", "GRPCRoute", "web", "Service"))
    assert listener(wrong_kind, "http").http_routes[0].rules[0].backends[0].cluster == ""
    wrong_name = compile_text(write, base + grant("backends", "HTTPRoute", "web", "Service", "db"))
    assert listener(wrong_name, "http").http_routes[0].rules[0].backends[0].cluster == ""

    granted = compile_text(write, base + grant("backends", "HTTPRoute", "web", "Service", "api"))
    (rule,) = listener(granted, "http").http_routes[0].rules
    assert rule.backends == (WeightedBackend(cluster="backends/api:80", weight=1),)
    assert rule.filters == (RequestMirrorFilter(cluster="backends/api:80", percent=5.0),)
    assert granted.unresolved == ()


def test_unknown_service_port_is_unresolved(write: Writer) -> None:
    snapshot = compile_text(
        write,
        gateway(HTTP_LISTENER)
        + service("api")
        + http_route(
            "web",
            "parentRefs: [{name: gw}]\nrules: [{backendRefs: [{name: api, port: 81, weight: 0}]}]",
        ),
    )
    rule = listener(snapshot, "http").http_routes[0].rules[0]
    assert rule.backends == (WeightedBackend(cluster="", weight=0),)
    assert snapshot.unresolved[0].reason == "Service has no port 81"


def test_cross_namespace_certificate_needs_a_reference_grant(
    write: Writer, pair: tuple[str, str], secret_doc: Callable[[str, str, str, str], str]
) -> None:
    listeners = (
        "[{name: https, port: 443, protocol: HTTPS, hostname: www.example.com, "
        "tls: {certificateRefs: [{name: www, namespace: certs}]}}]"
    )
    base = gateway(listeners, namespace="edge") + secret_doc("www", "certs", *pair) + "---\n"
    without = compile_text(write, base)
    assert without.ports == ()
    assert [(u.source, u.field, u.reason) for u in without.unresolved] == [
        (
            "Gateway edge/gw",
            "spec.listeners[0]",
            "no certificateRef resolved; the listener is not programmed",
        ),
        (
            "Gateway edge/gw",
            "spec.listeners[0].tls.certificateRefs[0]",
            "cross-namespace reference not permitted by any ReferenceGrant in certs",
        ),
    ]
    granted = compile_text(write, base + grant("certs", "Gateway", "edge", "Secret"))
    (cert,) = listener(granted, "https").certificates
    assert (cert.secret, cert.hostname, cert.cert_pem) == ("certs/www", "www.example.com", pair[0])
    assert granted.unresolved == ()


def test_listeners_sharing_a_port_share_a_binding(write: Writer) -> None:
    snapshot = compile_text(
        write,
        gateway("[{name: a, port: 80, protocol: HTTP, hostname: a.example.com}]", name="one")
        + gateway("[{name: b, port: 80, protocol: HTTP, hostname: b.example.com}]", name="two")
        + gateway(
            "[{name: c, port: 80, protocol: HTTP}]",
            name="three",
            extra="addresses: [{type: IPAddress, value: 127.0.0.1}, {value: '::1'}]",
        ),
    )
    assert [(b.address, b.port, [lst.name for lst in b.listeners]) for b in snapshot.ports] == [
        ("0.0.0.0", 80, ["a", "b"]),
        ("127.0.0.1", 80, ["c"]),
        ("::1", 80, ["c"]),
    ]


def test_http_and_https_on_one_port_conflict(
    write: Writer, pair: tuple[str, str], secret_doc: Callable[[str, str, str, str], str]
) -> None:
    path = write(
        "gw.yaml",
        gateway("[{name: plain, port: 8000, protocol: HTTP}]", name="one")
        + gateway(
            "[{name: tls, port: 8000, protocol: HTTPS, tls: {certificateRefs: [{name: c}]}},"
            " {name: again, port: 9000, protocol: HTTP},"
            " {name: twice, port: 9000, protocol: HTTP}]",
            name="two",
        )
        + secret_doc("c", "default", *pair),
    )
    with pytest.raises(ConfigError) as info:
        compile_resources(load_directory(path))
    assert str(info.value).splitlines() == [
        f"{path}:15: Gateway default/two: spec.listeners[0]: port 8000: HTTPS conflicts with "
        "HTTP listener default/one/plain on the same port",
        f"{path}:15: Gateway default/two: spec.listeners[2].hostname: conflicts with listener "
        "default/two/again: same address 0.0.0.0, port 9000 and hostname (any)",
    ]


def test_snapshot_round_trips_through_msgspec(full_example: Path) -> None:
    snapshot = load_snapshot(full_example)
    assert msgspec.json.decode(msgspec.json.encode(snapshot), type=Snapshot) == snapshot


def test_timeouts_use_gateway_api_durations(write: Writer) -> None:
    snapshot = compile_text(
        write,
        gateway(HTTP_LISTENER)
        + http_route(
            "web",
            """
            parentRefs: [{name: gw}]
            rules:
              - timeouts: {request: 0s, backendRequest: 1h2m500ms}
              - timeouts: {request: 1m30s}
            """,
        )
        + http_route("detached", "hostnames: [a.example.com]"),
    )
    first, second = listener(snapshot, "http").http_routes[0].rules
    # "0s" disables the request timeout.
    assert (first.request_timeout_s, first.backend_request_timeout_s) == (None, 3720.5)
    assert (second.request_timeout_s, second.backend_request_timeout_s) == (90.0, None)
    (unresolved,) = snapshot.unresolved
    assert (unresolved.source, unresolved.reason) == (
        "HTTPRoute default/detached",
        "no parentRefs: not attached",
    )


def test_httproute_retry_compiles(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        textwrap.dedent(
            """
            apiVersion: v1
            kind: Service
            metadata: {name: web}
            spec: {ports: [{port: 80}]}
            ---
            apiVersion: gateway.networking.k8s.io/v1
            kind: Gateway
            metadata: {name: gw}
            spec:
              gatewayClassName: isthmus
              listeners: [{name: http, port: 8080, protocol: HTTP}]
            ---
            apiVersion: gateway.networking.k8s.io/v1
            kind: HTTPRoute
            metadata: {name: r}
            spec:
              parentRefs: [{name: gw}]
              rules:
              - backendRefs: [{name: web, port: 80}]
                retry: {codes: [503, 502, 503], attempts: 3, backoff: 100ms}
              - backendRefs: [{name: web, port: 80}]
                retry: {attempts: 0}
              - backendRefs: [{name: web, port: 80}]
                retry: {codes: [500]}
            """
        )
    )
    snap = load_snapshot(tmp_path)
    rules = snap.ports[0].listeners[0].http_routes[0].rules
    assert rules[0].retry == RetryPolicy(retries=3, codes=(502, 503), backoff_base_s=0.1)
    assert rules[1].retry is None
    assert rules[2].retry == RetryPolicy(retries=1, codes=(500,))


def test_httproute_retry_bad_code_is_named(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        textwrap.dedent(
            """
            apiVersion: gateway.networking.k8s.io/v1
            kind: HTTPRoute
            metadata: {name: r}
            spec:
              rules: [{retry: {codes: [200]}}]
            """
        )
    )
    with pytest.raises(ConfigError) as err:
        load_snapshot(tmp_path)
    assert "spec.rules[0].retry.codes[0]" in str(err.value)
