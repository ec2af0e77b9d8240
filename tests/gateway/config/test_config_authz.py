"""Istio AuthorizationPolicy: every field of the subset reaches the listener's snapshot, the
scoping rules (targetRefs, root namespace, workload namespace, selector against the proxy's
labels), the empty-spec and no-rules cases, and every invalid field named by its path with
Istio's validation rules."""

from __future__ import annotations

import textwrap

import pytest
from config_support import Writer, problems

from gateway.config.compile import load_snapshot
from gateway.config.snapshot import (
    AuthzCondition,
    AuthzOperation,
    AuthzPolicy,
    AuthzRule,
    AuthzSource,
    Listener,
    Snapshot,
)

GATEWAYS = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  gatewayClassName: isthmus
  listeners:
    - {name: http, port: 8080, protocol: HTTP}
    - {name: tls, port: 9443, protocol: TLS, hostname: "*.example.com", tls: {mode: Passthrough}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: other, namespace: shop}
spec:
  gatewayClassName: isthmus
  listeners: [{name: http, port: 9090, protocol: HTTP}]
"""

SETTINGS = """
apiVersion: isthmus.dev/v1alpha1
kind: ProxySettings
metadata: {name: proxy, namespace: shop}
spec:
  node: {namespace: shop, labels: {app: edge, version: v1}}
"""


def policy(spec: str, *, name: str = "p", namespace: str = "shop", api: str = "v1") -> str:
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    return (
        f"apiVersion: security.istio.io/{api}\nkind: AuthorizationPolicy\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        + (f"spec:\n{body}\n" if body else "spec: {}\n")
    )


def compiled(write: Writer, *docs: str) -> Snapshot:
    write("gateways.yaml", GATEWAYS)
    write("settings.yaml", SETTINGS)
    return load_snapshot(write("policies.yaml", "---\n".join(docs)).parent)


def listener(snapshot: Snapshot, port: int) -> Listener:
    (binding,) = [b for b in snapshot.ports if b.port == port]
    (found,) = binding.listeners
    return found


def names(snapshot: Snapshot, port: int = 8080) -> list[str]:
    return [p.name for p in listener(snapshot, port).authz_policies]


def issues(write: Writer, spec: str, **kw: str) -> list[tuple[str, str]]:
    write("gateways.yaml", GATEWAYS)
    found = problems(write, policy(spec, **kw), name="policies.yaml")
    return [(p.path, p.message) for p in found]


# --- what reaches the snapshot ---------------------------------------------------------


def test_every_field_reaches_the_listener(write: Writer) -> None:
    spec = """
        action: DENY
        rules:
          - from:
              - source:
                  principals: [cluster.local/ns/a/sa/b]
                  notPrincipals: ["*/sa/bad"]
                  requestPrincipals: [issuer/sub]
                  notRequestPrincipals: ["*"]
                  namespaces: [a]
                  notNamespaces: [b]
                  ipBlocks: [10.0.0.0/8, 192.168.1.1]
                  notIpBlocks: [10.1.0.0/16]
              - source: {namespaces: [c]}
            to:
              - operation:
                  hosts: [www.example.com]
                  notHosts: ["*.internal"]
                  methods: [GET]
                  notMethods: [DELETE]
                  paths: ["/api/*"]
                  notPaths: ["/api/{*}/private"]
                  ports: ["8080"]
                  notPorts: ["9090"]
            when:
              - {key: "request.headers[X-Env]", values: [prod], notValues: [dev]}
              - {key: "request.auth.claims[groups][0]", values: [admin]}
          - {}
    """
    snapshot = compiled(write, policy(spec, name="all"))
    (found,) = listener(snapshot, 8080).authz_policies
    assert found == AuthzPolicy(
        name="shop/all",
        action="DENY",
        rules=(
            AuthzRule(
                sources=(
                    AuthzSource(
                        principals=("cluster.local/ns/a/sa/b",),
                        not_principals=("*/sa/bad",),
                        request_principals=("issuer/sub",),
                        not_request_principals=("*",),
                        namespaces=("a",),
                        not_namespaces=("b",),
                        ip_blocks=("10.0.0.0/8", "192.168.1.1"),
                        not_ip_blocks=("10.1.0.0/16",),
                    ),
                    AuthzSource(namespaces=("c",)),
                ),
                operations=(
                    AuthzOperation(
                        hosts=("www.example.com",),
                        not_hosts=("*.internal",),
                        methods=("GET",),
                        not_methods=("DELETE",),
                        paths=("/api/*",),
                        not_paths=("/api/{*}/private",),
                        ports=("8080",),
                        not_ports=("9090",),
                    ),
                ),
                conditions=(
                    AuthzCondition(
                        key="request.headers[X-Env]", values=("prod",), not_values=("dev",)
                    ),
                    AuthzCondition(key="request.auth.claims[groups][0]", values=("admin",)),
                ),
            ),
            AuthzRule(),
        ),
    )


@pytest.mark.parametrize("api", ["v1", "v1beta1"])
def test_api_versions(write: Writer, api: str) -> None:
    snapshot = compiled(write, policy("action: AUDIT", api=api))
    assert listener(snapshot, 8080).authz_policies == (AuthzPolicy(name="shop/p", action="AUDIT"),)


def test_unknown_api_version_is_refused(write: Writer) -> None:
    write("gateways.yaml", GATEWAYS)
    (problem,) = problems(write, policy("", api="v2"), name="policies.yaml")
    assert "security.istio.io/v2" in problem.message


@pytest.mark.parametrize("spec", ["spec: {}", "spec:", ""], ids=["empty", "null", "missing"])
def test_an_empty_spec_is_an_allow_policy_without_rules(write: Writer, spec: str) -> None:
    head = policy("").replace("spec: {}\n", "")
    snapshot = compiled(write, head + spec + "\n")
    assert listener(snapshot, 8080).authz_policies == (AuthzPolicy(name="shop/p"),)


def test_allow_without_rules_and_with_an_empty_list_are_the_same(write: Writer) -> None:
    snapshot = compiled(write, policy("action: ALLOW", name="a"), policy("rules: []", name="b"))
    assert listener(snapshot, 8080).authz_policies == (
        AuthzPolicy(name="shop/a"),
        AuthzPolicy(name="shop/b"),
    )


def test_tls_passthrough_listeners_get_no_policy(write: Writer) -> None:
    snapshot = compiled(write, policy("rules: [{}]"))
    assert listener(snapshot, 9443).authz_policies == ()
    assert names(snapshot) == ["shop/p"]


# --- scope ---------------------------------------------------------------------------------


SCOPES = [
    ("targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]", "shop", True,
     False),
    ("targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: other}]", "shop",
     False, True),
    ("targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}", "shop", True,
     False),
    ("targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw, namespace: shop}]",
     "shop", True, False),
    ("targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]", "istio-system",
     False, False),
    ("rules: [{}]", "shop", True, True),
    ("rules: [{}]", "istio-system", True, True),
    ("rules: [{}]", "elsewhere", False, False),
    ("selector: {matchLabels: {app: edge}}", "shop", True, True),
    ("selector: {matchLabels: {app: edge, version: v1}}", "istio-system", True, True),
    ("selector: {matchLabels: {app: edge, version: v2}}", "shop", False, False),
    ("selector: {matchLabels: {app: edge}}", "elsewhere", False, False),
    ("selector: {matchLabels: {}}", "shop", True, True),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "namespace", "on_gw", "on_other"), SCOPES)
def test_scope(write: Writer, spec: str, namespace: str, on_gw: bool, on_other: bool) -> None:
    snapshot = compiled(write, policy(spec, namespace=namespace))
    assert bool(names(snapshot, 8080)) is on_gw
    assert bool(names(snapshot, 9090)) is on_other


def test_policies_keep_a_stable_order(write: Writer) -> None:
    docs = [policy("rules: [{}]", name=n) for n in ("b", "a")]
    docs.append(policy("rules: [{}]", name="z", namespace="istio-system"))
    assert names(compiled(write, *docs)) == ["istio-system/z", "shop/a", "shop/b"]


def test_no_policy_leaves_listeners_untouched(write: Writer) -> None:
    write("gateways.yaml", GATEWAYS)
    snapshot = load_snapshot(write("settings.yaml", SETTINGS).parent)
    assert listener(snapshot, 8080).authz_policies == ()


# --- refused fields ------------------------------------------------------------------------

NOT_SUPPORTED = [
    ("action: CUSTOM\nrules: [{}]", "spec.action", '"CUSTOM" is not supported by isthmus'),
    ("provider: {name: ext}\nrules: [{}]", "spec.provider", "not supported by isthmus"),
    ("rules: [{from: [{source: {remoteIpBlocks: [1.2.3.4]}}]}]",
     "spec.rules[0].from[0].source.remoteIpBlocks", "not supported by isthmus"),
    ("rules: [{from: [{source: {notRemoteIpBlocks: [1.2.3.4]}}]}]",
     "spec.rules[0].from[0].source.notRemoteIpBlocks", "not supported by isthmus"),
    ("rules: [{from: [{source: {serviceAccounts: [a]}}]}]",
     "spec.rules[0].from[0].source.serviceAccounts", "not supported by isthmus"),
    ("rules: [{from: [{source: {notServiceAccounts: [a]}}]}]",
     "spec.rules[0].from[0].source.notServiceAccounts", "not supported by isthmus"),
    ("rules: [{from: [{source: {principal: [a]}}]}]",
     "spec.rules[0].from[0].source.principal", "unknown field (did you mean 'principals'?)"),
    ("rules: [{to: [{operation: {path: [/a]}}]}]",
     "spec.rules[0].to[0].operation.path", "unknown field (did you mean 'paths'?)"),
    ("action: PERMIT", "spec.action", 'expected one of "ALLOW", "AUDIT", "DENY"'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "path", "message"), NOT_SUPPORTED, ids=[p for _, p, _ in NOT_SUPPORTED]
)
def test_fields_outside_the_subset_are_refused_by_name(
    write: Writer, spec: str, path: str, message: str
) -> None:
    ((where, text),) = issues(write, spec)
    assert where == path
    assert text.startswith(message)


# --- Istio's validation rules ----------------------------------------------------------------

INVALID = [
    ("action: DENY", "spec.rules", "a DENY policy without rules would never be triggered"),
    ("action: DENY\nrules: []", "spec.rules", "a DENY policy without rules"),
    ("rules: [{from: []}]", "spec.rules[0].from", "must not be empty"),
    ("rules: [{to: []}]", "spec.rules[0].to", "must not be empty"),
    ("rules: [{from: [{}]}]", "spec.rules[0].from[0].source", "required field is missing"),
    ("rules: [{from: [{source: {}}]}]", "spec.rules[0].from[0].source",
     "must set at least one of principals"),
    ("rules: [{to: [{}]}]", "spec.rules[0].to[0].operation", "required field is missing"),
    ("rules: [{to: [{operation: {}}]}]", "spec.rules[0].to[0].operation",
     "must set at least one of hosts"),
    ('rules: [{from: [{source: {principals: [""]}}]}]',
     "spec.rules[0].from[0].source.principals[0]", "empty values are not allowed"),
    ('rules: [{from: [{source: {notNamespaces: [a, ""]}}]}]',
     "spec.rules[0].from[0].source.notNamespaces[1]", "empty values are not allowed"),
    ('rules: [{from: [{source: {requestPrincipals: [""]}}]}]',
     "spec.rules[0].from[0].source.requestPrincipals[0]", "empty values are not allowed"),
    ("rules: [{from: [{source: {ipBlocks: [10.0.0.256]}}]}]",
     "spec.rules[0].from[0].source.ipBlocks[0]", '"10.0.0.256" is not an IP address'),
    ("rules: [{from: [{source: {notIpBlocks: [10.0.0.0/33]}}]}]",
     "spec.rules[0].from[0].source.notIpBlocks[0]", '"10.0.0.0/33" is not an CIDR range'),
    ('rules: [{to: [{operation: {methods: [""]}}]}]',
     "spec.rules[0].to[0].operation.methods[0]", "empty values are not allowed"),
    ('rules: [{to: [{operation: {hosts: [""]}}]}]',
     "spec.rules[0].to[0].operation.hosts[0]", "empty values are not allowed"),
    ("rules: [{to: [{operation: {ports: [http]}}]}]",
     "spec.rules[0].to[0].operation.ports[0]", '"http" is not a port number'),
    ('rules: [{to: [{operation: {notPorts: ["70000"]}}]}]',
     "spec.rules[0].to[0].operation.notPorts[0]", '"70000" is not a port number'),
    ('rules: [{to: [{operation: {paths: ["/a/{**}/{*}"]}}]}]',
     "spec.rules[0].to[0].operation.paths[0]", "{**} must be the last operator"),
    ('rules: [{to: [{operation: {notPaths: ["/a{*}"]}}]}]',
     "spec.rules[0].to[0].operation.notPaths[0]", "only {*} and {**} may stand in braces"),
    ('rules: [{to: [{operation: {paths: ["/{*}/a b"]}}]}]',
     "spec.rules[0].to[0].operation.paths[0]", 'the segment "a b"'),
    ('rules: [{when: [{key: "", values: [a]}]}]', "spec.rules[0].when[0].key",
     "the key must not be empty"),
    ("rules: [{when: [{values: [a]}]}]", "spec.rules[0].when[0].key",
     "required field is missing"),
    ("rules: [{when: [{key: source.ip}]}]", "spec.rules[0].when[0]",
     "set at least one of values and notValues"),
    ("rules: [{when: [{key: source.ips, values: [a]}]}]", "spec.rules[0].when[0].key",
     '"source.ips" is not an attribute isthmus knows'),
    ("rules: [{when: [{key: remote.ip, values: [1.2.3.4]}]}]", "spec.rules[0].when[0].key",
     '"remote.ip": not supported by isthmus'),
    ("rules: [{when: [{key: connection.sni, values: [a]}]}]", "spec.rules[0].when[0].key",
     '"connection.sni": not supported by isthmus'),
    ("rules: [{when: [{key: destination.ip, values: [1.2.3.4]}]}]",
     "spec.rules[0].when[0].key", '"destination.ip": not supported by isthmus'),
    ("rules: [{when: [{key: source.serviceAccount, values: [a]}]}]",
     "spec.rules[0].when[0].key", '"source.serviceAccount": not supported by isthmus'),
    ('rules: [{when: [{key: "destination.labels[app]", values: [a]}]}]',
     "spec.rules[0].when[0].key", "replaced by the workload selector"),
    ("rules: [{when: [{key: destination.namespace, values: [a]}]}]",
     "spec.rules[0].when[0].key", "replaced by the policy's metadata.namespace"),
    ('rules: [{when: [{key: "request.headers[]", values: [a]}]}]',
     "spec.rules[0].when[0].key", "should have the form request.headers[name]"),
    ('rules: [{when: [{key: "request.headers[a][b]", values: [a]}]}]',
     "spec.rules[0].when[0].key", "name one header"),
    ('rules: [{when: [{key: "request.auth.claims[a][]", values: [a]}]}]',
     "spec.rules[0].when[0].key", "with non-empty names"),
    ("rules: [{when: [{key: request.auth.claims, values: [a]}]}]",
     "spec.rules[0].when[0].key", "is not an attribute isthmus knows"),
    ("rules: [{when: [{key: source.ip, values: [nope]}]}]", "spec.rules[0].when[0].values[0]",
     '"nope" is not an IP address'),
    ("rules: [{when: [{key: source.ip, notValues: [1.2.3.0/99]}]}]",
     "spec.rules[0].when[0].notValues[0]", '"1.2.3.0/99" is not an CIDR range'),
    ('rules: [{when: [{key: destination.port, values: ["-1"]}]}]',
     "spec.rules[0].when[0].values[0]", '"-1" is not a port number'),
    ('rules: [{when: [{key: request.auth.principal, values: [""]}]}]',
     "spec.rules[0].when[0].values[0]", "empty values are not allowed"),
    ("selector: {matchLabels: {app: edge}}\ntargetRefs: [{kind: Gateway, "
     "group: gateway.networking.k8s.io, name: gw}]", "spec",
     "set only one of selector, targetRef and targetRefs"),
    ("selector: {matchLabels: {app: 'ed*'}}", "spec.selector.matchLabels.app",
     'wildcards are not supported in a selector: "app=ed*"'),
    ("targetRefs: [{kind: Service, group: '', name: web}]", "spec.targetRefs[0]",
     "core/Service is not supported by isthmus"),
    ("targetRefs: [{kind: Gateway, group: networking.istio.io, name: gw}]", "spec.targetRefs[0]",
     "networking.istio.io/Gateway is not supported by isthmus"),
    ("targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw, namespace: x}]",
     "spec.targetRefs[0].namespace", "cross-namespace references are not supported"),
    ("targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io}]",
     "spec.targetRefs[0].name", "required field is missing"),
    ("targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: ''}",
     "spec.targetRef.name", "a targetRef must name its target"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "path", "message"), INVALID, ids=[f"{p}:{m[:30]}" for _, p, m in INVALID]
)
def test_istio_validation_rules(write: Writer, spec: str, path: str, message: str) -> None:
    found = issues(write, spec)
    assert len(found) == 1, found
    ((where, text),) = found
    assert where == path
    assert message in text


def test_all_problems_of_one_policy_are_reported_together(write: Writer) -> None:
    spec = """
        rules:
          - from: [{source: {ipBlocks: [bad]}}]
            to: [{operation: {ports: [http]}}]
            when: [{key: nope, values: [a]}]
    """
    assert [path for path, _ in issues(write, spec)] == [
        "spec.rules[0].from[0].source.ipBlocks[0]",
        "spec.rules[0].to[0].operation.ports[0]",
        "spec.rules[0].when[0].key",
    ]


def test_a_problem_names_the_object_and_line(write: Writer) -> None:
    write("gateways.yaml", GATEWAYS)
    text = policy("rules:\n  - to: [{operation: {ports: [http]}}]", name="web")
    (problem,) = problems(write, text, name="policies.yaml")
    assert problem.obj == "AuthorizationPolicy shop/web"
    assert problem.line == 6
