"""Istio RequestAuthentication: every field of the subset reaches the listener's JWT rules,
rules of several policies are merged, the scoping is AuthorizationPolicy's, and every invalid
or refused field is named by its path."""

from __future__ import annotations

import json
import textwrap

import pytest
from config_support import Writer, problems
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.config.compile import load_snapshot
from gateway.config.snapshot import JwtHeader, JwtRule, Listener, Snapshot

GATEWAYS = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  gatewayClassName: isthmus
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: other, namespace: shop}
spec:
  gatewayClassName: isthmus
  listeners: [{name: http, port: 9090, protocol: HTTP}]
---
apiVersion: isthmus.dev/v1alpha1
kind: ProxySettings
metadata: {name: proxy, namespace: shop}
spec:
  node: {namespace: shop, labels: {app: edge}}
"""


def public_jwks() -> str:
    rsa_key = json.loads(RSAAlgorithm.to_jwk(rsa.generate_private_key(65537, 2048).public_key()))
    ec_key = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    return json.dumps({"keys": [{**rsa_key, "kid": "r"}, {**ec_key, "kid": "e"}]})


JWKS = public_jwks()


def authn(spec: str, *, name: str = "jwt", namespace: str = "shop", api: str = "v1") -> str:
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    return (
        f"apiVersion: security.istio.io/{api}\nkind: RequestAuthentication\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{body}\n"
    )


def compiled(write: Writer, *docs: str) -> Snapshot:
    write("gateways.yaml", GATEWAYS)
    return load_snapshot(write("authn.yaml", "---\n".join(docs)).parent)


def listener(snapshot: Snapshot, port: int = 8080) -> Listener:
    (binding,) = [b for b in snapshot.ports if b.port == port]
    (found,) = binding.listeners
    return found


def issues(write: Writer, spec: str) -> list[tuple[str, str]]:
    write("gateways.yaml", GATEWAYS)
    found = problems(write, authn(spec), name="authn.yaml")
    assert all(p.obj == "RequestAuthentication shop/jwt" for p in found)
    return [(p.path, p.message) for p in found]


def test_every_field_reaches_the_listener(write: Writer) -> None:
    spec = """
        jwtRules:
          - issuer: https://issuer.example.com
            audiences: [api, https://web.example.com/]
            jwksUri: https://issuer.example.com/.well-known/jwks.json
            fromHeaders: [{name: X-Jwt-Assertion, prefix: "Token "}, {name: x-other}]
            fromParams: [token, jwt]
            outputPayloadToHeader: X-Jwt-Payload
            forwardOriginalToken: true
    """
    assert listener(compiled(write, authn(spec))).jwt_rules == (
        JwtRule(
            policy="shop/jwt",
            issuer="https://issuer.example.com",
            audiences=("api", "https://web.example.com/"),
            jwks_uri="https://issuer.example.com/.well-known/jwks.json",
            from_headers=(JwtHeader(name="x-jwt-assertion", prefix="Token "),
                          JwtHeader(name="x-other")),
            from_params=("token", "jwt"),
            output_payload_to_header="x-jwt-payload",
            forward_original_token=True,
        ),
    )  # fmt: skip


@pytest.mark.parametrize("api", ["v1", "v1beta1"])
def test_defaults_and_inline_jwks(write: Writer, api: str) -> None:
    spec = f"jwtRules: [{{issuer: me, jwks: '{JWKS}'}}]"
    (rule,) = listener(compiled(write, authn(spec, api=api))).jwt_rules
    assert rule == JwtRule(policy="shop/jwt", issuer="me", jwks=JWKS)
    assert not rule.from_headers and not rule.from_params and not rule.forward_original_token


def test_rules_of_every_policy_that_applies_are_merged(write: Writer) -> None:
    one = authn("jwtRules: [{issuer: a, jwksUri: http://keys/a}]", name="one")
    two = authn(
        "selector: {matchLabels: {app: edge}}\njwtRules: [{issuer: b, jwksUri: http://keys/b}]",
        name="two",
    )
    root = authn("jwtRules: [{issuer: c, jwksUri: http://keys/c}]", namespace="istio-system")
    miss = authn(
        "selector: {matchLabels: {app: nope}}\njwtRules: [{issuer: d, jwksUri: http://keys/d}]",
        name="miss",
    )
    rules = listener(compiled(write, one, two, root, miss)).jwt_rules
    assert [(r.policy, r.issuer) for r in rules] == [
        ("istio-system/jwt", "c"),
        ("shop/one", "a"),
        ("shop/two", "b"),
    ]


def test_target_refs_pick_the_gateway(write: Writer) -> None:
    spec = """
        targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: other}]
        jwtRules: [{issuer: a, jwksUri: http://keys/a}]
    """
    snapshot = compiled(write, authn(spec))
    assert listener(snapshot, 8080).jwt_rules == ()
    assert [r.issuer for r in listener(snapshot, 9090).jwt_rules] == ["a"]


def test_a_policy_without_rules_adds_nothing(write: Writer) -> None:
    assert listener(compiled(write, authn("jwtRules: []"))).jwt_rules == ()


REFUSED = [
    ("jwtRules: [{issuer: a, jwksUri: http://k/a, fromCookies: [session]}]",
     "spec.jwtRules[0].fromCookies"),
    ("jwtRules: [{issuer: a, jwksUri: http://k/a, outputClaimToHeaders: "
     "[{header: x-sub, claim: sub}]}]", "spec.jwtRules[0].outputClaimToHeaders"),
    ("jwtRules: [{issuer: a, jwksUri: http://k/a, timeout: 3s}]", "spec.jwtRules[0].timeout"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "path"), REFUSED, ids=[p for _, p in REFUSED])
def test_fields_outside_the_subset_are_refused_by_name(write: Writer, spec: str, path: str) -> None:
    ((where, message),) = issues(write, spec)
    assert where == path
    assert message.startswith("not supported by isthmus")


def test_unknown_fields_are_named(write: Writer) -> None:
    assert issues(write, "jwtRules: [{issuer: a, jwksUri: http://k/a, audience: [x]}]") == [
        ("spec.jwtRules[0].audience", "unknown field (did you mean 'audiences'?)")
    ]


INVALID = [
    (f"jwtRules: [{{jwks: '{JWKS}'}}]", "spec.jwtRules[0]", "set issuer or jwksUri"),
    ("jwtRules: [{issuer: a}]", "spec.jwtRules[0]", "set jwksUri or jwks"),
    (f"jwtRules: [{{issuer: a, jwksUri: 'http://k/a', jwks: '{JWKS}'}}]", "spec.jwtRules[0]",
     "set only one of jwksUri and jwks"),
    ("jwtRules: [{issuer: a, jwksUri: 'ftp://k/a'}]", "spec.jwtRules[0].jwksUri",
     "the scheme must be http or https"),
    ("jwtRules: [{issuer: a, jwksUri: 'http:///keys'}]", "spec.jwtRules[0].jwksUri", "has no host"),
    ("jwtRules: [{issuer: a, jwksUri: 'http://k:99999/a'}]", "spec.jwtRules[0].jwksUri",
     "is not a URL"),
    ("jwtRules: [{issuer: a, jwks: 'not json'}]", "spec.jwtRules[0].jwks", "not valid JSON"),
    ("jwtRules: [{issuer: a, jwks: '{\"keys\": []}'}]", "spec.jwtRules[0].jwks",
     'a non-empty "keys" list'),
    ("jwtRules: [{issuer: a, jwks: '{\"keys\": [1]}'}]", "spec.jwtRules[0].jwks",
     "keys[0] is not a JSON object"),
    ("jwtRules: [{issuer: a, jwks: '{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}'}]",
     "spec.jwtRules[0].jwks", 'keys[0]: kty "oct" is not a public key type'),
    ("jwtRules: [{issuer: a, jwks: '{\"keys\": [{\"kty\": \"RSA\", \"n\": \"x\"}]}'}]",
     "spec.jwtRules[0].jwks", "keys[0]:"),
    ("jwtRules: [{issuer: a, jwksUri: 'http://k/a', audiences: [api, '']}]",
     "spec.jwtRules[0].audiences[1]", "an audience must not be empty"),
    ("jwtRules: [{issuer: a, jwksUri: 'http://k/a', fromHeaders: [{name: 'x jwt'}]}]",
     "spec.jwtRules[0].fromHeaders[0].name", '"x jwt" is not a header name'),
    ("jwtRules: [{issuer: a, jwksUri: 'http://k/a', fromHeaders: [{prefix: 'Bearer '}]}]",
     "spec.jwtRules[0].fromHeaders[0].name", "required field is missing"),
    ("jwtRules: [{issuer: a, jwksUri: 'http://k/a', fromParams: ['']}]",
     "spec.jwtRules[0].fromParams[0]", "must not be empty"),
    ("jwtRules: [{issuer: a, jwksUri: 'http://k/a', outputPayloadToHeader: 'x:y'}]",
     "spec.jwtRules[0].outputPayloadToHeader", '"x:y" is not a header name'),
    ("jwtRules: [{issuer: a, jwksUri: 'http://k/a', forwardOriginalToken: 'yes'}]",
     "spec.jwtRules[0].forwardOriginalToken", "expected a boolean"),
    ("selector: {matchLabels: {app: edge}}\ntargetRef: {kind: Gateway, "
     "group: gateway.networking.k8s.io, name: gw}\njwtRules: []", "spec",
     "set only one of selector, targetRef and targetRefs"),
    ("targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio}]\n"
     "jwtRules: []", "spec.targetRefs[0]",
     "gateway.networking.k8s.io/GatewayClass is not supported"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "path", "message"), INVALID, ids=[m[:40] for _, _, m in INVALID])
def test_istio_validation_rules(write: Writer, spec: str, path: str, message: str) -> None:
    found = issues(write, spec)
    assert len(found) == 1, found
    ((where, text),) = found
    assert where == path
    assert message in text


def test_encryption_keys_are_skipped_in_an_inline_jwks(write: Writer) -> None:
    keys = json.loads(JWKS)["keys"]
    jwks = json.dumps({"keys": [{"kty": "RSA", "use": "enc", "alg": "RSA-OAEP"}, *keys]})
    (rule,) = listener(
        compiled(write, authn(f"jwtRules: [{{issuer: a, jwks: '{jwks}'}}]"))
    ).jwt_rules
    assert rule.jwks == jwks
