"""The ``isthmus.dev`` RateLimit and Fault kinds, and HTTPRoute/GRPCRoute ExtensionRef filters
that reference them: what compiles into the snapshot, every bad field named, and a missing
object becoming an unresolved reference whose rule answers 500 (the filter is not skipped)."""

from __future__ import annotations

import textwrap

import pytest
from config_support import Writer, one_problem

from gateway.config.compile import load_snapshot
from gateway.config.snapshot import (
    FaultFilter,
    RateLimitFilter,
    RouteFilter,
    Snapshot,
    UnresolvedFilter,
    UnresolvedRef,
)

BASE = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  gatewayClassName: isthmus
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{port: 80}]
"""

RATELIMIT = """
apiVersion: isthmus.dev/v1alpha1
kind: RateLimit
metadata: {name: api, namespace: shop}
spec:
"""

FAULT = """
apiVersion: isthmus.dev/v1alpha1
kind: Fault
metadata: {name: chaos, namespace: shop}
spec:
"""


def obj(head: str, spec: str) -> str:
    return head + textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ") + "\n"


def ref(kind: str, name: str, group: str = "isthmus.dev") -> str:
    return f"{{type: ExtensionRef, extensionRef: {{group: {group}, kind: {kind}, name: {name}}}}}"


def route(filters: list[str], *, kind: str = "HTTPRoute", rules: int = 1) -> str:
    rule = f"  - filters: [{', '.join(filters)}]\n    backendRefs: [{{name: web, port: 80}}]\n"
    return (
        f"apiVersion: gateway.networking.k8s.io/v1\nkind: {kind}\n"
        f"metadata: {{name: r, namespace: shop}}\nspec:\n  parentRefs: [{{name: gw}}]\n"
        f"  rules:\n" + rule * rules
    )


def compiled(write: Writer, *docs: str) -> Snapshot:
    return load_snapshot(write("config.yaml", "---\n".join([BASE, *docs])).parent)


def rule_filters(snapshot: Snapshot, rule: int = 0) -> tuple[RouteFilter, ...]:
    (listener,) = snapshot.ports[0].listeners
    (config,) = listener.http_routes
    return config.rules[rule].filters


def test_ratelimit_and_fault_compile_into_the_rule(write: Writer) -> None:
    snapshot = compiled(
        write,
        obj(
            RATELIMIT,
            """
            maxTokens: 20
            tokensPerFill: 10
            fillInterval: 1s
            key: {type: Header, header: X-Api-Key}
            responseHeaders: false
            """,
        ),
        obj(
            FAULT,
            """
            delay: {fixedDelay: 1.5s, percentage: {value: 10}}
            abort: {grpcStatus: UNAVAILABLE, percentage: {value: 5.5}}
            """,
        ),
        route([ref("RateLimit", "api"), ref("Fault", "chaos")]),
    )
    assert rule_filters(snapshot) == (
        RateLimitFilter(
            name="shop/api",
            scope="HTTPRoute shop/r spec.rules[0]",
            max_tokens=20,
            tokens_per_fill=10,
            fill_interval_s=1.0,
            key="Header",
            header="x-api-key",
            response_headers=False,
        ),
        FaultFilter(
            name="shop/chaos",
            delay_s=1.5,
            delay_percent=10.0,
            abort_grpc_status=14,
            abort_percent=5.5,
        ),
    )
    assert snapshot.unresolved == ()


def test_defaults_follow_envoy_and_istio(write: Writer) -> None:
    """tokensPerFill defaults to 1 (Envoy); an unset percentage injects nothing (Istio)."""
    snapshot = compiled(
        write,
        obj(RATELIMIT, "{maxTokens: 5, fillInterval: 500ms}"),
        obj(FAULT, "{abort: {httpStatus: 503}}"),
        route([ref("RateLimit", "api"), ref("Fault", "chaos")]),
    )
    limit, fault = rule_filters(snapshot)
    assert isinstance(limit, RateLimitFilter) and isinstance(fault, FaultFilter)
    assert (limit.tokens_per_fill, limit.fill_interval_s, limit.key) == (1, 0.5, "Route")
    assert limit.response_headers is True
    assert (fault.abort_http_status, fault.abort_percent, fault.delay_percent) == (503, 0.0, 0.0)


def test_each_rule_has_its_own_bucket_scope(write: Writer) -> None:
    snapshot = compiled(
        write,
        obj(RATELIMIT, "{maxTokens: 5, fillInterval: 1s}"),
        route([ref("RateLimit", "api")], rules=2),
    )
    scopes = [f.scope for i in (0, 1) for f in rule_filters(snapshot, i)]  # type: ignore[union-attr]
    assert scopes == ["HTTPRoute shop/r spec.rules[0]", "HTTPRoute shop/r spec.rules[1]"]


def test_grpcroute_takes_extension_filters(write: Writer) -> None:
    snapshot = compiled(
        write,
        obj(FAULT, "{abort: {grpcStatus: RESOURCE_EXHAUSTED, percentage: {value: 100}}}"),
        route([ref("Fault", "chaos")], kind="GRPCRoute"),
    )
    (fault,) = rule_filters(snapshot)
    assert isinstance(fault, FaultFilter)
    assert (fault.abort_grpc_status, fault.abort_percent) == (8, 100.0)


def test_missing_object_is_unresolved_and_the_rule_answers_500(write: Writer) -> None:
    """Gateway API: an ExtensionRef that cannot be resolved MUST NOT be skipped; the requests
    it would have processed get an error. Objects are looked up in the route's namespace."""
    other_namespace = RATELIMIT.replace("namespace: shop", "namespace: other")
    snapshot = compiled(
        write,
        obj(other_namespace, "{maxTokens: 5, fillInterval: 1s}"),
        route([ref("RateLimit", "api"), ref("Fault", "nope")]),
    )
    assert rule_filters(snapshot) == (
        UnresolvedFilter(target="RateLimit shop/api"),
        UnresolvedFilter(target="Fault shop/nope"),
    )
    assert snapshot.unresolved == (
        UnresolvedRef(
            "HTTPRoute shop/r",
            "spec.rules[0].filters[0].extensionRef",
            "RateLimit shop/api",
            "RateLimit not found",
        ),
        UnresolvedRef(
            "HTTPRoute shop/r",
            "spec.rules[0].filters[1].extensionRef",
            "Fault shop/nope",
            "Fault not found",
        ),
    )


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ("{fillInterval: 1s}", "spec.maxTokens", "required field is missing"),
        ("{maxTokens: 5}", "spec.fillInterval", "required field is missing"),
        ("{maxTokens: 0, fillInterval: 1s}", "spec.maxTokens", "must be at least 1, got 0"),
        (
            "{maxTokens: 5, tokensPerFill: 0, fillInterval: 1s}",
            "spec.tokensPerFill",
            "must be at least 1, got 0",
        ),
        (
            "{maxTokens: 5, tokensPerFill: 6, fillInterval: 1s}",
            "spec.tokensPerFill",
            "6 is more than maxTokens (5)",
        ),
        (
            "{maxTokens: 5, fillInterval: 10ms}",
            "spec.fillInterval",
            "10ms is shorter than the minimum of 50ms",
        ),
        (
            "{maxTokens: 5, fillInterval: 1 second}",
            "spec.fillInterval",
            '"1 second" is not a duration such as 10s, 500ms or 1h2m (GEP-2257)',
        ),
        (
            "{maxTokens: 5, fillInterval: 1s, key: {type: IP}}",
            "spec.key.type",
            'expected one of "ClientIP", "Header", "PeerIdentity", "Route", got the string "IP"',
        ),
        (
            "{maxTokens: 5, fillInterval: 1s, key: {type: Header}}",
            "spec.key.header",
            "required when type is Header",
        ),
        (
            "{maxTokens: 5, fillInterval: 1s, key: {type: ClientIP, header: x-a}}",
            "spec.key.header",
            "must not be set when type is ClientIP",
        ),
        (
            "{maxTokens: 5, fillInterval: 1s, key: {type: Header, header: 'a b'}}",
            "spec.key.header",
            '"a b" is not a valid HTTP header name',
        ),
        ("{maxTokens: 5, fillInterval: 1s, burst: 9}", "spec.burst", "unknown field"),
        (
            "{maxTokens: 5, fillInterval: 1s, responseHeaders: yes please}",
            "spec.responseHeaders",
            'expected a boolean (true or false), got the string "yes please"',
        ),
    ],
)
def test_ratelimit_bad_fields_are_named(write: Writer, spec: str, path: str, message: str) -> None:
    problem = one_problem(write, obj(RATELIMIT, spec))
    assert (problem.obj, problem.path, problem.message) == ("RateLimit shop/api", path, message)


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ("{}", "spec", "set delay, abort or both"),
        (
            "{delay: {fixedDelay: 1s, percent: 10}}",
            "spec.delay.percent",
            "not supported by isthmus (deprecated in Istio); use percentage: {value: N}",
        ),
        (
            "{delay: {fixedDelay: 1s, exponentialDelay: 1s}}",
            "spec.delay.exponentialDelay",
            "not supported by isthmus; use fixedDelay",
        ),
        ("{delay: {percentage: {value: 5}}}", "spec.delay.fixedDelay", "required field is missing"),
        (
            "{delay: {fixedDelay: soon}}",
            "spec.delay.fixedDelay",
            '"soon" is not a duration such as 10s, 500ms, 1.5s or 1h30m',
        ),
        (
            "{delay: {fixedDelay: 500us}}",
            "spec.delay.fixedDelay",
            '"500us" is too short: a duration must be at least 1ms',
        ),
        (
            "{delay: {fixedDelay: 1s, percentage: {value: 150}}}",
            "spec.delay.percentage.value",
            "must be at most 100, got 150",
        ),
        (
            "{abort: {http2Error: REFUSED_STREAM}}",
            "spec.abort.http2Error",
            "not supported by isthmus; use httpStatus or grpcStatus",
        ),
        (
            "{abort: {httpStatus: 503, percent: 5}}",
            "spec.abort.percent",
            "not supported by isthmus (deprecated in Istio); use percentage: {value: N}",
        ),
        ("{abort: {percentage: {value: 5}}}", "spec.abort", "set httpStatus or grpcStatus"),
        (
            "{abort: {httpStatus: 503, grpcStatus: UNAVAILABLE}}",
            "spec.abort.grpcStatus",
            "must not be set with httpStatus",
        ),
        ("{abort: {httpStatus: 700}}", "spec.abort.httpStatus", "must be at most 599, got 700"),
        ("{abort: {httpStatus: 100}}", "spec.abort.httpStatus", "must be at least 200, got 100"),
        (
            "{abort: {grpcStatus: 14}}",
            "spec.abort.grpcStatus",
            'expected one of "ABORTED", "ALREADY_EXISTS", "CANCELLED", "DATA_LOSS", '
            '"DEADLINE_EXCEEDED", "FAILED_PRECONDITION", "INTERNAL", "INVALID_ARGUMENT", '
            '"NOT_FOUND", "OUT_OF_RANGE", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", '
            '"UNAUTHENTICATED", "UNAVAILABLE", "UNIMPLEMENTED", "UNKNOWN", got the number 14',
        ),
        (
            "{abort: {httpStatus: 503, percentage: {value: -1}}}",
            "spec.abort.percentage.value",
            "must be at least 0, got -1",
        ),
        ("{abortPercent: 5}", "spec.abortPercent", "unknown field"),
    ],
)
def test_fault_bad_fields_are_named(write: Writer, spec: str, path: str, message: str) -> None:
    problem = one_problem(write, obj(FAULT, spec))
    assert (problem.obj, problem.path, problem.message) == ("Fault shop/chaos", path, message)


@pytest.mark.parametrize(
    ("extension", "message"),
    [
        (
            ref("RateLimit", "api", group="example.com"),
            "extension example.com/RateLimit is not supported by isthmus; "
            "reference an isthmus.dev RateLimit or Fault",
        ),
        (
            ref("ProxySettings", "p"),
            "extension isthmus.dev/ProxySettings is not supported by isthmus; "
            "reference an isthmus.dev RateLimit or Fault",
        ),
    ],
)
@pytest.mark.parametrize("kind", ["HTTPRoute", "GRPCRoute"])
def test_other_extension_refs_are_refused(
    write: Writer, extension: str, message: str, kind: str
) -> None:
    problem = one_problem(write, route([extension], kind=kind))
    assert (problem.path, problem.message) == ("spec.rules[0].filters[0].extensionRef", message)
