"""RequestAuthentication (JWT) on the request path, with RS256 and ES256 keys made here and
tokens signed with PyJWT: what passes, what is refused with which of Envoy's answers, where
tokens are read, what is forwarded, and JWKS from a real local HTTP server (first fetch,
the server going down, key rotation picked up by a refresh driven from the test)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.codec.messages import RequestHead
from gateway.config.snapshot import JwtHeader, JwtRule
from gateway.filters.authn_jwt import JwtAuthn
from gateway.filters.base import LocalReply, RequestContext
from gateway.filters.jwks import JwksError, JwksSource, KeySet
from gateway.filters.jwks_fetch import JwksRegistry

ISSUER = "https://issuer.example.com"
RSA_KEY = rsa.generate_private_key(65537, 2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA = rsa.generate_private_key(65537, 2048)


def jwk(key: Any, kid: str, **extra: str) -> dict[str, Any]:
    public = key.public_key()
    text = RSAAlgorithm.to_jwk(public) if isinstance(key, rsa.RSAPrivateKey) else None
    if text is None:
        text = ECAlgorithm.to_jwk(public)
    return {**json.loads(text), "kid": kid, **extra}


def jwks(*keys: dict[str, Any]) -> str:
    return json.dumps({"keys": list(keys)})


JWKS = jwks(jwk(RSA_KEY, "rsa"), jwk(EC_KEY, "ec"))


def token(
    key: Any = RSA_KEY,
    *,
    alg: str = "RS256",
    kid: str | None = "rsa",
    **claims: Any,
) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "sub": "alice", "iat": now, "exp": now + 300, **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    headers = {"kid": kid} if kid else None
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(
    header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes]
) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def rule(**kw: Any) -> JwtRule:
    return JwtRule(**{"policy": "shop/jwt", "issuer": ISSUER, "jwks": JWKS, **kw})


def inline(r: JwtRule) -> JwksSource:
    assert r.jwks is not None
    return JwksSource.inline(r.jwks)


def request(
    headers: dict[str, str] | None = None, path: str = "/api", grpc: bool = False
) -> RequestContext:
    items = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if grpc:
        items.append((b"content-type", b"application/grpc"))
    return RequestContext(request=RequestHead("GET", path, "www.example.com", items))


def bearer(t: str) -> dict[str, str]:
    return {"authorization": f"Bearer {t}"}


def run(ctx: RequestContext, *rules: JwtRule) -> LocalReply | None:
    return JwtAuthn(rules or (rule(),), inline).on_request(ctx)


def refused(ctx: RequestContext, *rules: JwtRule) -> tuple[int, str]:
    reply = run(ctx, *rules)
    assert reply is not None, "the request passed"
    return reply.status, reply.body.decode()


# --- what passes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "alg", "kid"),
    [(RSA_KEY, "RS256", "rsa"), (EC_KEY, "ES256", "ec"), (RSA_KEY, "PS256", "rsa"),
     (RSA_KEY, "RS256", None), (EC_KEY, "ES256", None)],
    ids=["RS256", "ES256", "PS256", "RS256-no-kid", "ES256-no-kid"],
)  # fmt: skip
def test_a_valid_token_passes_and_its_claims_reach_the_context(
    key: Any, alg: str, kid: str | None
) -> None:
    ctx = request(bearer(token(key, alg=alg, kid=kid, groups=["admin"])))
    assert run(ctx) is None
    assert ctx.jwt_payload is not None
    assert (ctx.jwt_payload["iss"], ctx.jwt_payload["sub"]) == (ISSUER, "alice")
    assert ctx.jwt_payload["groups"] == ["admin"]


def test_no_token_passes_without_claims() -> None:
    ctx = request()
    assert run(ctx) is None
    assert ctx.jwt_payload is None


def test_another_authorization_scheme_is_not_a_token() -> None:
    ctx = request({"authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert run(ctx) is None
    assert ctx.jwt_payload is None
    assert ctx.request.get(b"authorization") == b"Basic YWxpY2U6c2VjcmV0"


def test_the_bearer_scheme_is_case_insensitive() -> None:
    ctx = request({"authorization": f"bearer {token()}"})
    assert run(ctx) is None
    assert ctx.jwt_payload is not None


def test_expired_within_the_clock_skew_passes() -> None:
    now = int(time.time())
    assert run(request(bearer(token(exp=now - 30)))) is None
    assert run(request(bearer(token(nbf=now + 30)))) is None


def test_a_token_without_exp_passes() -> None:
    assert run(request(bearer(token(exp=None)))) is None


@pytest.mark.parametrize("aud", ["api", ["web", "api"], "https://api/", "http://api"])
def test_an_allowed_audience_passes(aud: Any) -> None:
    assert run(request(bearer(token(aud=aud))), rule(audiences=("api",))) is None


def test_an_audience_is_not_checked_when_the_rule_lists_none() -> None:
    assert run(request(bearer(token(aud="anything")))) is None


def test_a_rule_without_issuer_takes_any_issuer() -> None:
    assert run(request(bearer(token(iss="https://elsewhere"))), rule(issuer="")) is None


# --- what is refused, with Envoy's answers ----------------------------------------------------

HEADER_ONLY = b64(b'{"alg": "RS256"}')
RSA_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


def _swap_payload(t: str, payload: dict[str, Any]) -> str:
    head, _, sig = t.split(".")
    return f"{head}.{b64(json.dumps(payload).encode())}.{sig}"


REFUSALS: list[tuple[str, Callable[[], str], JwtRule, int, str]] = [
    ("expired beyond the skew", lambda: token(exp=int(time.time()) - 120), rule(), 401,
     "Jwt is expired"),
    ("not yet valid beyond the skew", lambda: token(nbf=int(time.time()) + 120), rule(), 401,
     "Jwt not yet valid"),
    ("wrong issuer", lambda: token(iss="https://evil.example.com"), rule(), 401,
     "Jwt issuer is not configured"),
    ("wrong audience", lambda: token(aud="other"), rule(audiences=("api",)), 403,
     "Audiences in Jwt are not allowed"),
    ("no audience when some are required", lambda: token(), rule(audiences=("api",)), 403,
     "Audiences in Jwt are not allowed"),
    ("signed by another key", lambda: token(OTHER_RSA), rule(), 401, "Jwt verification fails"),
    ("an unknown kid", lambda: token(kid="nope"), rule(), 401,
     "Jwks doesn't have key to match kid or alg from Jwt"),
    ("an EC kid with an RSA algorithm", lambda: token(kid="ec"), rule(), 401,
     "Jwks doesn't have key to match kid or alg from Jwt"),
    ("alg none", lambda: handmade({"alg": "none"}, {"iss": ISSUER, "sub": "a"}, lambda _: b""),
     rule(), 401, "Jwt header [alg] is not supported"),
    ("alg missing", lambda: handmade({"typ": "JWT"}, {"iss": ISSUER}, lambda _: b"x"), rule(),
     401, "Jwt header [alg] field is required and must be a string"),
    ("HS256 keyed with the RSA public key (algorithm confusion)",
     lambda: handmade({"alg": "HS256", "kid": "rsa"}, {"iss": ISSUER, "sub": "a"},
                      lambda m: hmac.new(RSA_PEM, m, hashlib.sha256).digest()),
     rule(), 401, "Jwks doesn't have key to match kid or alg from Jwt"),
    ("HS256 keyed with the JWK's modulus",
     lambda: handmade({"alg": "HS256"}, {"iss": ISSUER, "sub": "a"},
                      lambda m: hmac.new(json.loads(JWKS)["keys"][0]["n"].encode(), m,
                                         hashlib.sha256).digest()),
     rule(), 401, "Jwks doesn't have key to match kid or alg from Jwt"),
    ("a forged payload", lambda: _swap_payload(token(), {"iss": ISSUER, "sub": "root"}), rule(),
     401, "Jwt verification fails"),
    ("two parts", lambda: "abc.def", rule(), 401,
     "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"),
    ("a header that is not base64url", lambda: "a+b.e30.c2ln", rule(), 401,
     "Jwt header is an invalid Base64url encoded"),
    ("a payload that is not JSON", lambda: HEADER_ONLY + "." + b64(b"nope") + ".x",
     rule(), 401, "Jwt payload is an invalid JSON"),
    ("exp that is not an integer", lambda: token(exp="tomorrow"), rule(), 401,
     "Jwt payload [exp] field is not an integer"),
    ("iss that is not a string", lambda: handmade({"alg": "RS256"}, {"iss": 7}, lambda _: b"x"),
     rule(), 401, "Jwt payload [iss] field is not a string"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "jwt_rule", "status", "body"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
def test_a_bad_token_is_refused(
    make: Callable[[], str], jwt_rule: JwtRule, status: int, body: str
) -> None:
    ctx = request(bearer(make()))
    assert refused(ctx, jwt_rule) == (status, body)
    assert ctx.jwt_payload is None


def test_the_refusal_carries_a_bearer_challenge() -> None:
    ctx = request(bearer("abc.def"), path="/api/items?page=2&access_token=secret")
    reply = run(ctx)
    assert reply is not None
    assert reply.headers == [
        (
            b"www-authenticate",
            b'Bearer realm="http://www.example.com/api/items", error="invalid_token"',
        )
    ]
    assert reply.flag == ""


def test_a_grpc_call_gets_unauthenticated() -> None:
    reply = run(request(bearer("abc.def"), grpc=True))
    assert reply is not None
    assert reply.status == 200
    assert (b"grpc-status", b"16") in reply.headers
    assert any(k == b"www-authenticate" for k, _ in reply.headers)


def test_every_token_must_be_valid() -> None:
    ctx = request(bearer(token()), path=f"/api?access_token={token(OTHER_RSA)}")
    assert refused(ctx) == (401, "Jwt verification fails")


# --- where tokens are read -----------------------------------------------------------------


def test_the_access_token_parameter_is_read_by_default() -> None:
    ctx = request(path=f"/api?x=1&access_token={token()}")
    assert run(ctx) is None
    assert ctx.jwt_payload is not None
    assert ctx.request.path == "/api?x=1"  # removed before forwarding


def test_from_headers_with_a_prefix() -> None:
    r = rule(from_headers=(JwtHeader(name="x-jwt-assertion", prefix="Token "),))
    ctx = request({"x-jwt-assertion": f"Token {token()}"})
    assert run(ctx, r) is None
    assert ctx.jwt_payload is not None
    assert ctx.request.get(b"x-jwt-assertion") is None


def test_from_headers_without_the_prefix_is_no_token() -> None:
    r = rule(from_headers=(JwtHeader(name="x-jwt-assertion", prefix="Token "),))
    ctx = request({"x-jwt-assertion": token()})
    assert run(ctx, r) is None
    assert ctx.jwt_payload is None


def test_explicit_locations_replace_the_defaults() -> None:
    r = rule(from_headers=(JwtHeader(name="x-jwt"),))
    ctx = request(bearer(token()))
    assert run(ctx, r) is None
    assert ctx.jwt_payload is None  # Authorization is not read for this rule
    assert ctx.request.get(b"authorization") is not None


def test_from_params() -> None:
    r = rule(from_params=("token",))
    ctx = request(path=f"/api?token={token()}&page=2")
    assert run(ctx, r) is None
    assert ctx.jwt_payload is not None
    assert ctx.request.path == "/api?page=2"
    bad = request(path="/api?token=abc.def")
    assert refused(bad, r)[0] == 401


def test_a_location_only_accepts_the_issuers_that_read_it() -> None:
    custom = rule(issuer="https://other", from_headers=(JwtHeader(name="x-jwt"),))
    ctx = request({"x-jwt": token()})  # an ISSUER token in the other issuer's header
    assert refused(ctx, rule(), custom) == (401, "Jwt issuer is not configured")
    assert run(request(bearer(token())), rule(), custom) is None


# --- what is forwarded -----------------------------------------------------------------------


def test_the_token_header_is_removed_by_default() -> None:
    ctx = request({**bearer(token()), "x-other": "kept"})
    assert run(ctx) is None
    assert ctx.request.get(b"authorization") is None
    assert ctx.request.get(b"x-other") == b"kept"


def test_forward_original_token_keeps_it() -> None:
    t = token()
    ctx = request(bearer(t), path=f"/api?access_token={t}")
    assert run(ctx, rule(forward_original_token=True)) is None
    assert ctx.request.get(b"authorization") == f"Bearer {t}".encode()
    assert ctx.request.path == f"/api?access_token={t}"


def test_output_payload_to_header() -> None:
    t = token(groups=["a"])
    ctx = request(bearer(t))
    assert run(ctx, rule(output_payload_to_header="x-jwt-payload")) is None
    value = ctx.request.get(b"x-jwt-payload")
    assert value is not None
    assert value.decode() == t.split(".")[1]
    decoded = json.loads(base64.urlsafe_b64decode(value + b"=" * (-len(value) % 4)))
    assert decoded == ctx.jwt_payload
    assert decoded["groups"] == ["a"]


def test_a_client_cannot_forge_the_payload_header() -> None:
    forged = {"x-jwt-payload": b64(json.dumps({"sub": "root"}).encode())}
    ctx = request(forged)
    assert run(ctx, rule(output_payload_to_header="x-jwt-payload")) is None
    assert ctx.request.get(b"x-jwt-payload") is None
    t = token()
    ctx = request({**forged, **bearer(t)})
    assert run(ctx, rule(output_payload_to_header="x-jwt-payload")) is None
    values = [v for k, v in ctx.request.headers if k == b"x-jwt-payload"]
    assert values == [t.split(".")[1].encode()]


# --- key sets --------------------------------------------------------------------------------


def test_key_binding_comes_from_the_key_not_the_token() -> None:
    keys = KeySet.parse(JWKS)
    assert [k.algorithm_name for k in keys.candidates("rsa", "RS256")] == ["RS256"]
    assert keys.candidates("rsa", "HS256") == []
    assert keys.candidates("rsa", "ES256") == []
    assert [k.algorithm_name for k in keys.candidates("ec", "ES256")] == ["ES256"]
    assert keys.candidates("ec", "ES384") == []
    pinned = KeySet.parse(jwks(jwk(RSA_KEY, "r", alg="RS512")))
    assert pinned.candidates("r", "RS256") == []
    assert len(pinned.candidates("r", "RS512")) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("nope", "Jwks is an invalid JSON"),
        ("{}", "Jwks does not have [keys] field"),
        ('{"keys": {}}', "[keys] in Jwks is not an array"),
        ('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "Jwks doesn't have any valid public key"),
        ('{"keys": [{"kty": "RSA", "n": "x"}]}', "Jwks doesn't have any valid public key"),
    ],
)
def test_unusable_key_sets(body: str, message: str) -> None:
    with pytest.raises(JwksError, match=message.replace("[", r"\[").replace("]", r"\]")):
        KeySet.parse(body)


def test_an_inline_jwks_that_cannot_be_used_refuses_the_filter() -> None:
    with pytest.raises(ValueError, match=r"RequestAuthentication shop/jwt jwtRules\[0\]"):
        JwtAuthn((rule(jwks='{"keys": []}'),), inline)


# --- JWKS from a real HTTP server --------------------------------------------------------------


class JwksServer:
    """A tiny HTTP/1.1 server on a real socket that serves ``body`` at any path."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.status = 200
        self.requests = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        body = self.body.encode()
        head = (
            f"HTTP/1.1 {self.status} X\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        writer.close()


@pytest.fixture
async def server() -> AsyncIterator[JwksServer]:
    s = JwksServer(jwks(jwk(RSA_KEY, "k1")))
    await s.start()
    yield s
    if s._server is not None and s._server.is_serving():
        await s.stop()


@pytest.fixture
async def registry() -> AsyncIterator[JwksRegistry]:
    r = JwksRegistry(refresh_s=3600, timeout_s=2)
    yield r
    await r.aclose()


def uri_rule(uri: str) -> JwtRule:
    return JwtRule(policy="shop/jwt", issuer=ISSUER, jwks_uri=uri)


async def test_before_the_first_fetch_tokens_are_refused(
    server: JwksServer, registry: JwksRegistry
) -> None:
    r = uri_rule(server.uri)
    authn = JwtAuthn((r,), registry.source_for)
    ctx = request(bearer(token(kid="k1")))
    reply = authn.on_request(ctx)
    assert reply is not None
    assert (reply.status, reply.body) == (401, b"Jwks remote fetch is failed")
    assert server.requests == 0  # nothing is fetched on the request path
    assert authn.on_request(request()) is None  # no token still passes


async def test_fetch_then_server_down_keeps_the_keys(
    server: JwksServer, registry: JwksRegistry
) -> None:
    r = uri_rule(server.uri)
    authn = JwtAuthn((r,), registry.source_for)
    fetcher = registry.fetcher(server.uri)
    assert await fetcher.refresh()
    assert server.requests == 1
    assert authn.on_request(request(bearer(token(kid="k1")))) is None

    await server.stop()
    assert not await fetcher.refresh()
    source = registry.source(server.uri)
    assert source.error is not None and "Jwks remote fetch is failed" in source.error
    assert authn.on_request(request(bearer(token(kid="k1")))) is None  # last good keys


async def test_a_bad_answer_keeps_the_keys(server: JwksServer, registry: JwksRegistry) -> None:
    authn = JwtAuthn((uri_rule(server.uri),), registry.source_for)
    fetcher = registry.fetcher(server.uri)
    assert await fetcher.refresh()
    server.status = 500
    assert not await fetcher.refresh()
    server.status, server.body = 200, '{"keys": []}'
    assert not await fetcher.refresh()
    assert registry.source(server.uri).error == "Jwks doesn't have any valid public key"
    assert authn.on_request(request(bearer(token(kid="k1")))) is None


async def test_key_rotation_is_picked_up_on_refresh(
    server: JwksServer, registry: JwksRegistry
) -> None:
    authn = JwtAuthn((uri_rule(server.uri),), registry.source_for)
    fetcher = registry.fetcher(server.uri)
    assert await fetcher.refresh()
    new_token = token(EC_KEY, alg="ES256", kid="k2")
    reply = authn.on_request(request(bearer(new_token)))
    assert reply is not None and reply.status == 401

    server.body = jwks(jwk(EC_KEY, "k2"))  # the issuer rotates: k1 retired, k2 in
    assert await fetcher.refresh()
    assert authn.on_request(request(bearer(new_token))) is None
    old = authn.on_request(request(bearer(token(kid="k1"))))
    assert old is not None and old.body == b"Jwks doesn't have key to match kid or alg from Jwt"


async def test_the_registry_fetches_in_the_background_and_stops(
    server: JwksServer, registry: JwksRegistry
) -> None:
    authn = JwtAuthn((uri_rule(server.uri),), registry.source_for)
    registry.retain([server.uri])
    source = registry.source(server.uri)
    for _ in range(200):  # the first fetch happens at once; poll briefly for it
        if source.keys is not None:
            break
        await asyncio.sleep(0.01)
    assert source.fetches == 1
    assert authn.on_request(request(bearer(token(kid="k1")))) is None
    task = registry.tasks[server.uri]
    registry.retain([server.uri])  # same URI: same source, same loop
    assert registry.tasks[server.uri] is task and registry.source(server.uri) is source
    registry.retain([])
    await asyncio.sleep(0)
    assert task.cancelled() or task.done()
    assert registry.sources == {} and registry.tasks == {}


async def test_a_timeout_is_a_failed_fetch(registry: JwksRegistry) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    uri = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/jwks"
    try:
        fetcher = registry.fetcher(uri)
        fetcher.timeout_s = 0.2
        assert not await fetcher.refresh()
        assert registry.source(uri).keys is None
        assert "TimeoutError" in (registry.source(uri).error or "")
    finally:
        srv.close()
