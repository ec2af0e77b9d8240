"""Validation of HTTPRoute, GRPCRoute and TLSRoute: unsupported fields and the rules of each."""

from __future__ import annotations

import textwrap

import pytest
from config_support import GW, Writer, one_problem, problems

ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
"""


def route(spec: str) -> str:
    return ROUTE + textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ") + "\n"


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        (
            "rules: [{sessionPersistence: {sessionName: x}}]",
            "spec.rules[0].sessionPersistence",
            "not supported by isthmus",
        ),
        (
            "rules: [{backendRefs: [{name: a, port: 80, filters: []}]}]",
            "spec.rules[0].backendRefs[0].filters",
            "not supported by isthmus (filters on a backendRef); put them on the rule",
        ),
        (
            "rules: [{filters: [{type: ExtensionRef, extensionRef: "
            "{group: example.com, kind: Lua, name: r}}]}]",
            "spec.rules[0].filters[0].extensionRef",
            "extension example.com/Lua is not supported by isthmus; "
            "reference an isthmus.dev RateLimit or Fault",
        ),
        (
            "rules: [{filters: [{type: CORS}]}]",
            "spec.rules[0].filters[0].type",
            '"CORS" is not supported by isthmus',
        ),
        (
            "parentRefs: [{name: web, kind: Service, group: ''}]",
            "spec.parentRefs[0]",
            "parent core/Service is not supported by isthmus; attach routes to a Gateway",
        ),
    ],
)
def test_upstream_fields_we_do_not_implement(
    write: Writer, spec: str, path: str, message: str
) -> None:
    problem = one_problem(write, route(spec))
    assert (problem.path, problem.message) == (path, message)


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        (
            "rules: [{matches: [{path: {type: Prefix}}]}]",
            "spec.rules[0].matches[0].path.type",
            'expected one of "Exact", "PathPrefix", "RegularExpression", got the string "Prefix"',
        ),
        (
            "rules: [{matches: [{path: {value: api}}]}]",
            "spec.rules[0].matches[0].path.value",
            '"api" must start with "/"',
        ),
        (
            "rules: [{matches: [{path: {type: RegularExpression, value: '/a('}}]}]",
            "spec.rules[0].matches[0].path.value",
            "invalid regular expression: missing ), unterminated subpattern at position 2",
        ),
        (
            "rules: [{matches: [{method: get}]}]",
            "spec.rules[0].matches[0].method",
            'expected one of "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", '
            '"PUT", "TRACE", got the string "get"',
        ),
        (
            "rules: [{matches: [{headers: [{name: a, value: x}, {name: A, value: y}]}]}]",
            "spec.rules[0].matches[0].headers[1].name",
            '"A" is matched more than once',
        ),
        (
            "rules: [{backendRefs: [{name: api, port: '80'}]}]",
            "spec.rules[0].backendRefs[0].port",
            'expected an integer, got the string "80"',
        ),
        (
            "rules: [{backendRefs: [{name: api}]}]",
            "spec.rules[0].backendRefs[0].port",
            "required when referencing a Service",
        ),
        (
            "rules: [{timeouts: {request: 10 seconds}}]",
            "spec.rules[0].timeouts.request",
            '"10 seconds" is not a duration such as 10s, 500ms or 1h2m (GEP-2257)',
        ),
        (
            "rules: [{timeouts: {request: 1s, backendRequest: 2s}}]",
            "spec.rules[0].timeouts.backendRequest",
            "2s is longer than the request timeout 1s",
        ),
        (
            "hostnames: ['10.0.0.1']",
            "spec.hostnames[0]",
            '"10.0.0.1" is an IP address; hostnames must be DNS names',
        ),
        (
            "hostnames: [Example.COM]",
            "spec.hostnames[0]",
            '"Example.COM" is not a hostname such as www.example.com or *.example.com',
        ),
        (
            "rules: [{filters: [{type: RequestHeaderModifier}]}]",
            "spec.rules[0].filters[0].requestHeaderModifier",
            "required when type is RequestHeaderModifier",
        ),
        (
            "rules: [{filters: [{type: URLRewrite, urlRewrite: {}, requestRedirect: {}}]}]",
            "spec.rules[0].filters[0].requestRedirect",
            "must not be set when type is URLRewrite",
        ),
        (
            "rules: [{filters: [{type: URLRewrite, urlRewrite: {}}, "
            "{type: RequestRedirect, requestRedirect: {}}]}]",
            "spec.rules[0].filters",
            "RequestRedirect and URLRewrite cannot be used together",
        ),
        (
            "rules: [{matches: [{path: {type: Exact, value: /a}}], filters: [{type: URLRewrite, "
            "urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]}]",
            "spec.rules[0].filters[0].urlRewrite.path.type",
            "ReplacePrefixMatch needs a rule with exactly one match, of type PathPrefix",
        ),
        (
            "rules: [{filters: [{type: RequestRedirect, requestRedirect: {statusCode: 304}}]}]",
            "spec.rules[0].filters[0].requestRedirect.statusCode",
            "expected one of 301, 302, 303, 307, 308, got the number 304",
        ),
        (
            "rules: [{filters: [{type: RequestHeaderModifier, requestHeaderModifier: "
            "{set: [{name: X-A, value: '1'}], remove: [x-a]}}]}]",
            "spec.rules[0].filters[0].requestHeaderModifier.remove[0]",
            'header "x-a" appears more than once in this filter',
        ),
        (
            "rules: [{filters: [{type: RequestMirror, requestMirror: "
            "{backendRef: {name: a, port: 80}, percent: 10, fraction: {numerator: 1}}}]}]",
            "spec.rules[0].filters[0].requestMirror",
            "set percent or fraction, not both",
        ),
        (
            "rules: [{matches: [{headers: [{name: 'bad header', value: x}]}]}]",
            "spec.rules[0].matches[0].headers[0].name",
            '"bad header" is not a valid HTTP header name',
        ),
        ("rules: {}", "spec.rules", "expected a list, got a mapping"),
        ("parentRefs: [{}]", "spec.parentRefs[0].name", "required field is missing"),
    ],
)
def test_httproute_rules(write: Writer, spec: str, path: str, message: str) -> None:
    problem = one_problem(write, route(spec))
    assert (problem.path, problem.message) == (path, message)


def test_every_problem_in_an_object_is_reported(write: Writer) -> None:
    found = problems(
        write,
        route(
            """
            hostnames: [a.example.com, 42]
            rules:
              - matches: [{path: {type: Exact, value: x}, colour: red}]
                backendRefs: [{name: api, port: 0}]
            """
        ),
    )
    assert [(p.path, p.message) for p in found] == [
        (
            "spec.hostnames[1]",
            "expected a string, got the number 42 (quote it in YAML to keep it a string)",
        ),
        ("spec.rules[0].matches[0].colour", "unknown field"),
        ("spec.rules[0].backendRefs[0].port", "must be at least 1, got 0"),
    ]


def test_grpcroute_rules(write: Writer) -> None:
    found = problems(
        write,
        """
        apiVersion: gateway.networking.k8s.io/v1
        kind: GRPCRoute
        metadata: {name: rpc}
        spec:
          rules:
            - matches:
                - method: {}
                - method: {service: "pkg/Svc"}
                - method: {type: RegularExpression, method: "Get("}
              filters:
                - {type: RequestRedirect}
        """,
    )
    assert [(p.path, p.message) for p in found] == [
        (
            "spec.rules[0].filters[0].type",
            'expected one of "ExtensionRef", "RequestHeaderModifier",'
            ' "RequestMirror", "ResponseHeaderModifier", got the string "RequestRedirect"',
        ),
    ]
    found = problems(
        write,
        """
        apiVersion: gateway.networking.k8s.io/v1
        kind: GRPCRoute
        metadata: {name: rpc}
        spec:
          rules:
            - matches:
                - method: {}
                - method: {service: "pkg/Svc"}
                - method: {type: RegularExpression, method: "Get("}
        """,
    )
    assert [(p.path, p.message) for p in found] == [
        ("spec.rules[0].matches[0].method", "set service, method or both"),
        ("spec.rules[0].matches[1].method.service", '"pkg/Svc" is not a valid gRPC service name'),
        (
            "spec.rules[0].matches[2].method.method",
            "invalid regular expression: missing ), unterminated subpattern at position 3",
        ),
    ]


def test_tlsroute_rules(write: Writer) -> None:
    found = problems(
        write,
        """
        apiVersion: gateway.networking.k8s.io/v1alpha3
        kind: TLSRoute
        metadata: {name: db}
        spec:
          rules:
            - backendRefs: [{name: a, port: 1}]
            - backendRefs: [{name: b, port: 1}]
        """,
    )
    assert [(p.path, p.message) for p in found] == [
        ("spec.hostnames", f"at least one is required in {GW}/v1alpha3"),
        (
            "spec.rules[1]",
            "several rules are not supported by isthmus; put all backendRefs in one rule",
        ),
    ]
