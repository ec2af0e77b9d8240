"""AuthorizationPolicy matching, table-driven: one table per rule kind (each source and
operation field, its ``not`` form, each ``when`` key) and one for Istio's evaluation order.

Every row is one ALLOW policy with one rule that sets only the field under test, evaluated
against a RequestContext built here: the request is allowed exactly when the field matches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.codec.messages import RequestHead
from gateway.config.snapshot import (
    AuthzCondition,
    AuthzOperation,
    AuthzPolicy,
    AuthzRule,
    AuthzSource,
)
from gateway.filters.authz import DENIED_BODY, Authz
from gateway.filters.base import RequestContext

PORT = 8080
PEER = "spiffe://cluster.local/ns/shop/sa/web"
JWT = {"iss": "issuer.example", "sub": "alice"}


@dataclass
class Req:
    """What the request under test carries (defaults: a plain GET from 10.0.0.1)."""

    method: str = "GET"
    path: str = "/"
    host: str = "www.example.com"
    headers: list[tuple[str, str]] = field(default_factory=list)
    address: str = "10.0.0.1"
    peer: str | None = None
    jwt: dict[str, Any] | None = None

    def ctx(self) -> RequestContext:
        head = RequestHead(
            self.method,
            self.path,
            self.host,
            [(k.lower().encode(), v.encode()) for k, v in self.headers],
        )
        return RequestContext(
            request=head,
            downstream_address=self.address,
            peer_principal=self.peer,
            jwt_payload=self.jwt,
        )


def allowed(rule: AuthzRule, req: Req, port: int = PORT) -> bool:
    authz = Authz([AuthzPolicy(name="shop/p", action="ALLOW", rules=(rule,))], port)
    return authz.decide(req.ctx()).allowed


def source(**kw: tuple[str, ...]) -> AuthzRule:
    return AuthzRule(sources=(AuthzSource(**kw),))


def operation(**kw: tuple[str, ...]) -> AuthzRule:
    return AuthzRule(operations=(AuthzOperation(**kw),))


def when(key: str, values: tuple[str, ...] = (), not_values: tuple[str, ...] = ()) -> AuthzRule:
    return AuthzRule(conditions=(AuthzCondition(key=key, values=values, not_values=not_values),))


Row = tuple[tuple[str, ...], Req, bool]


def run(table: list[Row], make: Any) -> None:
    for values, req, expected in table:
        assert allowed(make(values), req) is expected, (values, req)


# --- sources -----------------------------------------------------------------------------

PRINCIPALS: list[Row] = [
    (("cluster.local/ns/shop/sa/web",), Req(peer=PEER), True),
    (("cluster.local/ns/shop/sa/api",), Req(peer=PEER), False),
    (("cluster.local/ns/shop/*",), Req(peer=PEER), True),
    (("*/sa/web",), Req(peer=PEER), True),
    (("*/sa/api", "*/sa/web"), Req(peer=PEER), True),
    (("*",), Req(peer=PEER), True),
    (("*",), Req(peer=None), False),  # plaintext: no principal, as without mTLS in Istio
    (("cluster.local/ns/shop/sa/web",), Req(peer="cluster.local/ns/shop/sa/web"), True),
    (("spiffe://cluster.local/ns/shop/sa/web",), Req(peer=PEER), False),
]


def test_principals() -> None:
    run(PRINCIPALS, lambda v: source(principals=v))


NOT_PRINCIPALS: list[Row] = [
    (("*/sa/web",), Req(peer=PEER), False),
    (("*/sa/api",), Req(peer=PEER), True),
    (("*",), Req(peer=None), True),  # a plaintext peer has none of them
]


def test_not_principals() -> None:
    run(NOT_PRINCIPALS, lambda v: source(not_principals=v))


NAMESPACES: list[Row] = [
    (("shop",), Req(peer=PEER), True),
    (("other",), Req(peer=PEER), False),
    (("sh*",), Req(peer=PEER), True),
    (("*op",), Req(peer=PEER), True),
    (("*",), Req(peer=PEER), True),
    (("shop",), Req(peer=None), False),
    (("shop",), Req(peer="spiffe://cluster.local/workload/shop"), False),
]


def test_namespaces() -> None:
    run(NAMESPACES, lambda v: source(namespaces=v))


NOT_NAMESPACES: list[Row] = [
    (("shop",), Req(peer=PEER), False),
    (("dev",), Req(peer=PEER), True),
    (("shop",), Req(peer=None), True),
]


def test_not_namespaces() -> None:
    run(NOT_NAMESPACES, lambda v: source(not_namespaces=v))


IP_BLOCKS: list[Row] = [
    (("10.0.0.0/8",), Req(address="10.1.2.3"), True),
    (("10.0.0.0/8",), Req(address="11.0.0.1"), False),
    (("127.0.0.1",), Req(address="127.0.0.1"), True),
    (("127.0.0.1",), Req(address="127.0.0.2"), False),
    (("192.168.0.0/16", "10.0.0.0/8"), Req(address="10.9.9.9"), True),
    (("10.0.0.0/8",), Req(address="::ffff:10.0.0.1"), True),  # IPv4-mapped counts as IPv4
    (("::1",), Req(address="::1"), True),
    (("fd00::/8",), Req(address="10.0.0.1"), False),
    (("10.0.0.0/8",), Req(address=""), False),  # no IP peer (a Unix socket)
    (("10.0.0.1/8",), Req(address="10.200.0.1"), True),  # host bits ignored, as Istio does
]


def test_ip_blocks() -> None:
    run(IP_BLOCKS, lambda v: source(ip_blocks=v))


NOT_IP_BLOCKS: list[Row] = [
    (("10.0.0.0/8",), Req(address="10.1.2.3"), False),
    (("10.0.0.0/8",), Req(address="192.168.1.1"), True),
    (("10.0.0.0/8",), Req(address=""), True),
]


def test_not_ip_blocks() -> None:
    run(NOT_IP_BLOCKS, lambda v: source(not_ip_blocks=v))


URL_JWT = {"iss": "https://accounts.example.com", "sub": "alice"}
REQUEST_PRINCIPALS: list[Row] = [
    (("issuer.example/alice",), Req(jwt=JWT), True),
    (("issuer.example/bob",), Req(jwt=JWT), False),
    (("https://accounts.example.com/alice",), Req(jwt=URL_JWT), True),  # split at the last /
    (("*",), Req(jwt=JWT), True),
    (("*",), Req(jwt=None), False),  # no token: nothing matches
    (("*",), Req(jwt={"iss": "issuer.example"}), False),  # needs a sub too
    (("*/alice",), Req(jwt=JWT), True),
    (("*/bob",), Req(jwt=JWT), False),
    (("*.example/alice",), Req(jwt=JWT), True),  # issuer suffix, exact subject
    (("issuer.example/*",), Req(jwt=JWT), True),
    (("issuer.example/al*",), Req(jwt=JWT), True),
    (("other/*",), Req(jwt=JWT), False),
    (("*ice",), Req(jwt=JWT), True),  # no "/": a subject suffix, any issuer
    (("issuer.ex*",), Req(jwt=JWT), True),  # no "/": an issuer prefix, any subject
    (("issuer.example/alice",), Req(jwt={"iss": "issuer.example", "sub": 7}), False),
]


def test_request_principals() -> None:
    run(REQUEST_PRINCIPALS, lambda v: source(request_principals=v))


NOT_REQUEST_PRINCIPALS: list[Row] = [
    (("*",), Req(jwt=None), True),
    (("*",), Req(jwt=JWT), False),
    (("issuer.example/bob",), Req(jwt=JWT), True),
]


def test_not_request_principals() -> None:
    run(NOT_REQUEST_PRINCIPALS, lambda v: source(not_request_principals=v))


def test_source_fields_are_anded_and_sources_ored() -> None:
    both = AuthzSource(namespaces=("shop",), ip_blocks=("10.0.0.0/8",))
    rule = AuthzRule(sources=(both,))
    assert allowed(rule, Req(peer=PEER, address="10.0.0.1"))
    assert not allowed(rule, Req(peer=PEER, address="192.168.0.1"))
    assert not allowed(rule, Req(peer=None, address="10.0.0.1"))
    either = AuthzRule(
        sources=(AuthzSource(namespaces=("shop",)), AuthzSource(ip_blocks=("1.2.3.4",)))
    )
    assert allowed(either, Req(peer=None, address="1.2.3.4"))
    assert allowed(either, Req(peer=PEER, address="10.0.0.1"))
    assert not allowed(either, Req(peer=None, address="10.0.0.1"))


# --- operations ----------------------------------------------------------------------------

HOSTS: list[Row] = [
    (("www.example.com",), Req(host="www.example.com"), True),
    (("www.example.com",), Req(host="WWW.Example.COM"), True),  # case-insensitive
    (("WWW.EXAMPLE.COM",), Req(host="www.example.com"), True),
    (("www.example.com",), Req(host="www.example.com:8080"), False),  # Istio keeps the port
    (("www.example.com:*",), Req(host="www.example.com:8080"), True),
    (("*.example.com",), Req(host="api.example.com"), True),
    (("*.example.com",), Req(host="example.com"), False),
    (("api.*",), Req(host="api.internal"), True),
    (("*",), Req(host="anything"), True),
    (("other.example.com",), Req(host="www.example.com"), False),
]


def test_hosts() -> None:
    run(HOSTS, lambda v: operation(hosts=v))


def test_not_hosts() -> None:
    run(
        [
            (("*.internal",), Req(host="db.internal"), False),
            (("*.internal",), Req(host="www.example.com"), True),
            (("DB.internal",), Req(host="db.INTERNAL"), False),
        ],
        lambda v: operation(not_hosts=v),
    )


METHODS: list[Row] = [
    (("GET",), Req(method="GET"), True),
    (("GET",), Req(method="POST"), False),
    (("GET", "HEAD"), Req(method="HEAD"), True),
    (("P*",), Req(method="PATCH"), True),
    (("get",), Req(method="GET"), False),  # methods are case-sensitive
]


def test_methods() -> None:
    run(METHODS, lambda v: operation(methods=v))


def test_not_methods() -> None:
    run(
        [(("DELETE",), Req(method="DELETE"), False), (("DELETE",), Req(method="GET"), True)],
        lambda v: operation(not_methods=v),
    )


PATHS: list[Row] = [
    (("/api",), Req(path="/api"), True),
    (("/api",), Req(path="/api/"), False),
    (("/api",), Req(path="/api?debug=1"), True),  # the query is not part of the path
    (("/api",), Req(path="/api#frag"), True),
    (("/api/*",), Req(path="/api/users"), True),
    (("/api/*",), Req(path="/api"), False),
    (("*/admin",), Req(path="/x/admin"), True),
    (("*",), Req(path="/"), True),
    # Istio's BASE normalization: dot segments, decoded unreserved characters, backslashes.
    (("/admin",), Req(path="/public/../admin"), True),
    (("/admin",), Req(path="/./admin"), True),
    (("/admin",), Req(path="/%61dmin"), True),
    (("/admin",), Req(path="/%2E%2E/admin"), True),
    (("/admin",), Req(path="\\admin"), True),
    (("/admin",), Req(path="/../../admin"), True),
    (("/public/*",), Req(path="/public/../admin"), False),
    (("/a/b",), Req(path="/a%2Fb"), False),  # %2F stays encoded under BASE
    (("/a%2Fb",), Req(path="/a%2fb"), True),  # ... with its hex digits upper-cased
    (("/a/b",), Req(path="/a//b"), False),  # slashes are not merged under BASE
    (("/admin/",), Req(path="/admin/x/.."), True),
    # Path templates: {*} is one segment, {**} the rest of the path.
    (("/users/{*}/profile",), Req(path="/users/42/profile"), True),
    (("/users/{*}/profile",), Req(path="/users/4/2/profile"), False),
    (("/users/{*}/profile",), Req(path="/users//profile"), False),
    (("/files/{**}",), Req(path="/files/a/b/c.txt"), True),
    (("/files/{**}",), Req(path="/files"), False),
    (("/{*}/v1/{**}",), Req(path="/svc/v1/a/b"), True),
    (("/a.b/{*}",), Req(path="/axb/c"), False),  # literal parts are literal
]


def test_paths() -> None:
    run(PATHS, lambda v: operation(paths=v))


def test_not_paths() -> None:
    run(
        [
            (("/admin*",), Req(path="/admin/users"), False),
            (("/admin*",), Req(path="/x/../admin"), False),
            (("/admin*",), Req(path="/public"), True),
        ],
        lambda v: operation(not_paths=v),
    )


def test_ports() -> None:
    assert allowed(operation(ports=("8080",)), Req(), port=8080)
    assert not allowed(operation(ports=("8080",)), Req(), port=9090)
    assert allowed(operation(ports=("9090", "8080")), Req(), port=8080)
    assert not allowed(operation(not_ports=("8080",)), Req(), port=8080)
    assert allowed(operation(not_ports=("8080",)), Req(), port=9090)


def test_operation_fields_are_anded_and_operations_ored() -> None:
    op = AuthzOperation(methods=("GET",), paths=("/api/*",))
    assert allowed(AuthzRule(operations=(op,)), Req(method="GET", path="/api/x"))
    assert not allowed(AuthzRule(operations=(op,)), Req(method="POST", path="/api/x"))
    ops = (op, AuthzOperation(methods=("POST",), paths=("/data",)))
    assert allowed(AuthzRule(operations=ops), Req(method="POST", path="/data"))
    assert not allowed(AuthzRule(operations=ops), Req(method="POST", path="/api/x"))


# --- conditions: one table per key -----------------------------------------------------------

HEADERS: list[tuple[str, tuple[str, ...], tuple[str, ...], Req, bool]] = [
    ("request.headers[x-env]", ("prod",), (), Req(headers=[("x-env", "prod")]), True),
    ("request.headers[x-env]", ("prod",), (), Req(headers=[("x-env", "staging")]), False),
    ("request.headers[x-env]", ("prod",), (), Req(), False),
    ("request.headers[X-Env]", ("prod",), (), Req(headers=[("x-env", "prod")]), True),
    ("request.headers[x-env]", ("pr*",), (), Req(headers=[("x-env", "prod")]), True),
    ("request.headers[x-env]", ("*od",), (), Req(headers=[("x-env", "prod")]), True),
    ("request.headers[x-env]", ("*",), (), Req(headers=[("x-env", "")]), True),  # presence
    ("request.headers[x-env]", ("*",), (), Req(), False),
    ("request.headers[x-env]", ("a,b",), (), Req(headers=[("x-env", "a"), ("x-env", "b")]), True),
    ("request.headers[x-env]", ("Prod",), (), Req(headers=[("x-env", "prod")]), False),
    ("request.headers[x-env]", (), ("dev",), Req(), True),  # absent: none of the notValues
    ("request.headers[x-env]", (), ("dev",), Req(headers=[("x-env", "dev")]), False),
    ("request.headers[x-env]", ("p*",), ("pre*",), Req(headers=[("x-env", "prod")]), True),
    ("request.headers[x-env]", ("p*",), ("pre*",), Req(headers=[("x-env", "preview")]), False),
]


@pytest.mark.parametrize(("key", "values", "not_values", "req", "expected"), HEADERS)
def test_when_request_headers(
    key: str, values: tuple[str, ...], not_values: tuple[str, ...], req: Req, expected: bool
) -> None:
    assert allowed(when(key, values, not_values), req) is expected


def test_when_source_ip() -> None:
    run(
        [
            (("10.0.0.0/8",), Req(address="10.2.3.4"), True),
            (("10.0.0.0/8",), Req(address="172.16.0.1"), False),
            (("127.0.0.1",), Req(address="127.0.0.1"), True),
        ],
        lambda v: when("source.ip", v),
    )
    assert allowed(when("source.ip", not_values=("10.0.0.0/8",)), Req(address="172.16.0.1"))
    assert not allowed(when("source.ip", not_values=("10.0.0.0/8",)), Req(address="10.0.0.9"))


def test_when_source_namespace() -> None:
    run(
        [
            (("shop",), Req(peer=PEER), True),
            (("dev",), Req(peer=PEER), False),
            (("shop",), Req(peer=None), False),
        ],
        lambda v: when("source.namespace", v),
    )
    assert allowed(when("source.namespace", not_values=("dev",)), Req(peer=None))


def test_when_source_principal() -> None:
    run(
        [
            (("cluster.local/ns/shop/sa/web",), Req(peer=PEER), True),
            (("*/sa/web",), Req(peer=PEER), True),
            (("*/sa/api",), Req(peer=PEER), False),
            (("*",), Req(peer=None), False),
        ],
        lambda v: when("source.principal", v),
    )


def test_when_request_auth_principal() -> None:
    run(
        [
            (("issuer.example/alice",), Req(jwt=JWT), True),
            (("issuer.example/bob",), Req(jwt=JWT), False),
            (("*",), Req(jwt=None), False),
            (("*/alice",), Req(jwt=JWT), True),
        ],
        lambda v: when("request.auth.principal", v),
    )
    assert allowed(when("request.auth.principal", not_values=("*",)), Req(jwt=None))


def test_when_request_auth_audiences() -> None:
    run(
        [
            (("api",), Req(jwt={**JWT, "aud": "api"}), True),
            (("api",), Req(jwt={**JWT, "aud": ["web", "api"]}), True),
            (("api",), Req(jwt={**JWT, "aud": ["web"]}), False),
            (("ap*",), Req(jwt={**JWT, "aud": "api"}), True),
            (("api",), Req(jwt=JWT), False),
            (("api",), Req(jwt=None), False),
        ],
        lambda v: when("request.auth.audiences", v),
    )


def test_when_request_auth_presenter() -> None:
    run(
        [
            (("frontend",), Req(jwt={**JWT, "azp": "frontend"}), True),
            (("frontend",), Req(jwt={**JWT, "azp": "backend"}), False),
            (("frontend",), Req(jwt=JWT), False),
        ],
        lambda v: when("request.auth.presenter", v),
    )


CLAIMS = {
    **JWT,
    "groups": ["dev", "admin"],
    "role": "editor",
    "org": {"team": "payments", "ids": ["a1", "b2"]},
    "scope": "read write",
    "level": 42,
    "verified": True,
}
CLAIM_ROWS: list[tuple[str, tuple[str, ...], Req, bool]] = [
    ("request.auth.claims[groups]", ("admin",), Req(jwt=CLAIMS), True),
    ("request.auth.claims[groups]", ("ops",), Req(jwt=CLAIMS), False),
    ("request.auth.claims[role]", ("editor",), Req(jwt=CLAIMS), True),
    ("request.auth.claims[role]", ("edit*",), Req(jwt=CLAIMS), True),
    ("request.auth.claims[org][team]", ("payments",), Req(jwt=CLAIMS), True),
    ("request.auth.claims[org][ids]", ("b2",), Req(jwt=CLAIMS), True),
    ("request.auth.claims[org][missing]", ("x",), Req(jwt=CLAIMS), False),
    ("request.auth.claims[role][deeper]", ("editor",), Req(jwt=CLAIMS), False),
    ("request.auth.claims[scope]", ("write",), Req(jwt=CLAIMS), True),  # space-delimited
    ("request.auth.claims[scope]", ("read write",), Req(jwt=CLAIMS), False),
    ("request.auth.claims[level]", ("42",), Req(jwt=CLAIMS), False),  # strings only
    ("request.auth.claims[verified]", ("true",), Req(jwt=CLAIMS), False),
    ("request.auth.claims[iss]", ("issuer.example",), Req(jwt=CLAIMS), True),
    ("request.auth.claims[role]", ("editor",), Req(jwt=None), False),
]


@pytest.mark.parametrize(("key", "values", "req", "expected"), CLAIM_ROWS)
def test_when_request_auth_claims(
    key: str, values: tuple[str, ...], req: Req, expected: bool
) -> None:
    assert allowed(when(key, values), req) is expected


def test_when_request_auth_claims_not_values() -> None:
    assert not allowed(when("request.auth.claims[groups]", not_values=("admin",)), Req(jwt=CLAIMS))
    assert allowed(when("request.auth.claims[groups]", not_values=("admin",)), Req(jwt=None))


def test_when_destination_port() -> None:
    assert allowed(when("destination.port", ("8080",)), Req(), port=8080)
    assert not allowed(when("destination.port", ("8080",)), Req(), port=9090)
    assert allowed(when("destination.port", not_values=("8080",)), Req(), port=9090)


def test_conditions_are_anded() -> None:
    rule = AuthzRule(
        conditions=(
            AuthzCondition(key="request.headers[x-a]", values=("1",)),
            AuthzCondition(key="source.ip", values=("10.0.0.0/8",)),
        )
    )
    assert allowed(rule, Req(headers=[("x-a", "1")], address="10.0.0.1"))
    assert not allowed(rule, Req(headers=[("x-a", "1")], address="11.0.0.1"))
    assert not allowed(rule, Req(address="10.0.0.1"))


def test_a_rule_needs_a_source_an_operation_and_every_condition() -> None:
    rule = AuthzRule(
        sources=(AuthzSource(ip_blocks=("10.0.0.0/8",)),),
        operations=(AuthzOperation(methods=("GET",)),),
        conditions=(AuthzCondition(key="request.headers[x-a]", values=("1",)),),
    )
    assert allowed(rule, Req(headers=[("x-a", "1")]))
    assert not allowed(rule, Req(headers=[("x-a", "1")], method="POST"))
    assert not allowed(rule, Req(headers=[("x-a", "1")], address="1.1.1.1"))
    assert not allowed(rule, Req())


def test_a_bad_value_in_a_snapshot_is_refused_when_compiled() -> None:
    bad = AuthzPolicy(name="shop/bad", rules=(source(ip_blocks=("nope",)),))
    with pytest.raises(ValueError, match=r'AuthorizationPolicy shop/bad rules\[0\]: "nope"'):
        Authz([bad], PORT)
    with pytest.raises(ValueError, match=r"rules\[0\]: when\[0\]"):
        Authz([AuthzPolicy(name="shop/k", rules=(when("remote.ip", ("1.1.1.1",)),))], PORT)


# --- evaluation order ------------------------------------------------------------------------

EVERYTHING = AuthzRule()
FROM_TEN = source(ip_blocks=("10.0.0.0/8",))
GET_ONLY = operation(methods=("GET",))


def policy(name: str, action: str, *rules: AuthzRule) -> AuthzPolicy:
    return AuthzPolicy(name=f"shop/{name}", action=action, rules=rules)  # type: ignore[arg-type]


ORDER: list[tuple[str, list[AuthzPolicy], Req, bool, str | None]] = [
    ("no policy allows", [], Req(), True, None),
    ("a matching DENY denies", [policy("d", "DENY", FROM_TEN)], Req(), False, "shop/d"),
    ("a DENY that does not match allows", [policy("d", "DENY", FROM_TEN)],
     Req(address="1.1.1.1"), True, None),
    ("DENY wins over a matching ALLOW",
     [policy("a", "ALLOW", EVERYTHING), policy("d", "DENY", GET_ONLY)], Req(), False, "shop/d"),
    ("a matching ALLOW allows", [policy("a", "ALLOW", GET_ONLY)], Req(), True, "shop/a"),
    ("with ALLOW policies, no match denies", [policy("a", "ALLOW", GET_ONLY)],
     Req(method="POST"), False, None),
    ("any one ALLOW suffices",
     [policy("a", "ALLOW", GET_ONLY), policy("b", "ALLOW", FROM_TEN)], Req(method="POST"), True,
     "shop/b"),
    ("any one rule suffices", [policy("a", "ALLOW", GET_ONLY, FROM_TEN)], Req(method="POST"),
     True, "shop/a"),
    ("an ALLOW without rules (spec: {}) denies everything", [policy("nothing", "ALLOW")], Req(),
     False, None),
    ("an empty rule allows everything", [policy("all", "ALLOW", EVERYTHING)], Req(), True,
     "shop/all"),
    ("allow-nothing beside allow-all allows",
     [policy("nothing", "ALLOW"), policy("all", "ALLOW", EVERYTHING)], Req(), True, "shop/all"),
    ("a DENY with an empty rule denies everything", [policy("d", "DENY", EVERYTHING)], Req(),
     False, "shop/d"),
    ("AUDIT alone allows", [policy("au", "AUDIT", EVERYTHING)], Req(), True, None),
    ("AUDIT does not count as an ALLOW policy",
     [policy("au", "AUDIT", EVERYTHING), policy("d", "DENY", FROM_TEN)], Req(address="1.1.1.1"),
     True, None),
    ("AUDIT does not rescue a request no ALLOW matches",
     [policy("au", "AUDIT", EVERYTHING), policy("a", "ALLOW", GET_ONLY)], Req(method="POST"),
     False, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("policies", "req", "expected", "decided_by"),
    [row[1:] for row in ORDER],
    ids=[row[0] for row in ORDER],
)
def test_evaluation_order(
    policies: list[AuthzPolicy], req: Req, expected: bool, decided_by: str | None
) -> None:
    decision = Authz(policies, PORT).decide(req.ctx())
    assert decision.allowed is expected
    assert decision.policy == decided_by


def test_audit_only_marks() -> None:
    authz = Authz(
        [policy("au", "AUDIT", GET_ONLY), policy("au2", "AUDIT", FROM_TEN), policy("au3", "AUDIT")],
        PORT,
    )
    decision = authz.decide(Req(method="GET", address="1.1.1.1").ctx())
    assert decision.allowed
    assert decision.audited == ("shop/au",)


def test_a_denied_request_gets_envoys_rbac_answer() -> None:
    authz = Authz([policy("d", "DENY", EVERYTHING)], PORT)
    reply = authz.on_request(Req().ctx())
    assert reply is not None
    assert (reply.status, reply.body, reply.flag) == (403, DENIED_BODY, "")
    assert DENIED_BODY == b"RBAC: access denied"
    assert Authz([], PORT).on_request(Req().ctx()) is None


def test_a_denied_grpc_call_gets_permission_denied() -> None:
    authz = Authz([policy("d", "DENY", EVERYTHING)], PORT)
    reply = authz.on_request(
        Req(method="POST", headers=[("content-type", "application/grpc")]).ctx()
    )
    assert reply is not None
    assert reply.status == 200
    assert (b"grpc-status", b"7") in reply.headers
    assert (b"grpc-message", b"RBAC: access denied") in reply.headers
