"""AuthorizationPolicy and RequestAuthentication on a real gateway process.

The gateway fetches its JWKS from a real local HTTP server in the background. Policies target
the Gateway with ``targetRefs``: a DENY on ``/admin*``, and ALLOW rules for ``/public*``
(anyone), ``/api*`` (a ``requestPrincipals`` of alice's token), ``/local*`` (``ipBlocks``
127.0.0.1) and ``/ten*`` (``source.ip`` in 10.0.0.0/8, which a loopback client is not).
Checked with curl and httpx: 403 ``RBAC: access denied``, 401 for a bad token with Envoy's
body and challenge, 200 with a good token, the token removed and its payload forwarded, and a
reload that drops the DENY policy lifting it.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.gateway.e2e.helpers import (
    ConfigDir,
    backend_service_yaml,
    curl,
    http_route_yaml,
    wait_until,
)
from tests.support.backends import HttpBackend
from tests.support.gateway import GatewayProcess, free_port

ISSUER = "https://issuer.e2e"
KEY = rsa.generate_private_key(65537, 2048)
OTHER_KEY = rsa.generate_private_key(65537, 2048)
GW_TARGET = "targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]"

DENY_ADMIN = f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-admin, namespace: default}}
spec:
  {GW_TARGET}
  action: DENY
  rules:
  - to: [{{operation: {{paths: ["/admin*"]}}}}]
"""

ALLOW = f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow, namespace: default}}
spec:
  {GW_TARGET}
  rules:
  - to: [{{operation: {{paths: ["/public*"]}}}}]
  - from: [{{source: {{requestPrincipals: ["{ISSUER}/alice"]}}}}]
    to: [{{operation: {{paths: ["/api*"], methods: [GET, POST]}}}}]
  - from: [{{source: {{ipBlocks: [127.0.0.1]}}}}]
    to: [{{operation: {{paths: ["/local*"]}}}}]
  - to: [{{operation: {{paths: ["/ten*"]}}}}]
    when: [{{key: source.ip, values: [10.0.0.0/8]}}]
"""


def authn_yaml(jwks_uri: str) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: default}}
spec:
  {GW_TARGET}
  jwtRules:
  - issuer: {ISSUER}
    audiences: [e2e]
    jwksUri: {jwks_uri}
    outputPayloadToHeader: x-jwt-payload
"""


def token(sub: str = "alice", key: Any = KEY, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "sub": sub, "aud": "e2e", "iat": now, "exp": now + 600, **claims}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "e2e"})


class JwksHandler(BaseHTTPRequestHandler):
    body = json.dumps(
        {"keys": [{**json.loads(RSAAlgorithm.to_jwk(KEY.public_key())), "kid": "e2e"}]}
    ).encode()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Running:
    def __init__(self, gw: GatewayProcess, port: int, cfg: ConfigDir, backend: HttpBackend):
        self.gw, self.port, self.cfg, self.backend = gw, port, cfg, backend
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str, token_: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {token_}"} if token_ else {}
        return httpx.get(self.url + path, headers=headers, timeout=10, **kw)


@pytest.fixture(scope="module")
def jwks_uri() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), JwksHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/keys"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, jwks_uri: str) -> Iterator[Running]:
    backend = HttpBackend("authz").start()
    cfg = ConfigDir(tmp_path_factory.mktemp("authz") / "cfg")
    port = free_port()
    cfg.gateway(port)
    cfg.write("svc.yaml", backend_service_yaml("authz", backend.port))
    cfg.write("route.yaml", http_route_yaml("web", "  - backendRefs: [{name: authz, port: 80}]\n"))
    cfg.write("deny.yaml", DENY_ADMIN)
    cfg.write("allow.yaml", ALLOW)
    cfg.write("authn.yaml", authn_yaml(jwks_uri))
    gw = GatewayProcess(cfg.path).start()
    run = Running(gw, port, cfg, backend)
    # The keys arrive in the background, after the gateway is ready.
    wait_until(lambda: run.get("/api", token()).status_code == 200, what="the JWKS fetch")
    yield run
    gw.stop()
    backend.stop()


def test_a_denied_request_gets_403_rbac_access_denied(running: Running) -> None:
    out = curl("-i", f"{running.url}/admin/users")
    head, _, body = out.stdout.partition("\n\n")
    assert head.startswith("HTTP/1.1 403")
    assert body == "RBAC: access denied"


def test_deny_comes_before_allow(running: Running) -> None:
    # /admin is denied even for a request that an ALLOW rule would let through.
    response = running.get("/admin", token())
    assert (response.status_code, response.text) == (403, "RBAC: access denied")


def test_paths_are_normalized_before_matching(running: Running) -> None:
    out = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "--path-as-is",
               f"{running.url}/public/../admin")  # fmt: skip
    assert out.stdout == "403"
    assert running.get("/%61dmin").status_code == 403


def test_an_allow_rule_lets_anyone_through(running: Running) -> None:
    response = running.get("/public/page")
    assert response.status_code == 200
    assert response.json()["path"] == "/public/page"


def test_no_allow_match_is_denied(running: Running) -> None:
    response = running.get("/elsewhere")
    assert (response.status_code, response.text) == (403, "RBAC: access denied")


def test_request_principals_need_a_token(running: Running) -> None:
    response = running.get("/api/items")
    assert (response.status_code, response.text) == (403, "RBAC: access denied")


def test_a_good_token_with_the_right_principal_gets_200(running: Running) -> None:
    t = token(groups=["admin"])
    response = running.get("/api/items", t)
    assert response.status_code == 200
    seen = response.json()["headers"]
    assert "authorization" not in seen  # forwardOriginalToken is false: the token is removed
    payload = seen["x-jwt-payload"]
    assert payload == t.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert (claims["sub"], claims["groups"]) == ("alice", ["admin"])


def test_a_good_token_with_another_principal_is_denied(running: Running) -> None:
    response = running.get("/api/items", token("bob"))
    assert (response.status_code, response.text) == (403, "RBAC: access denied")


def test_a_bad_token_gets_401(running: Running) -> None:
    out = curl("-i", "-H", f"authorization: Bearer {token(key=OTHER_KEY)}",
               f"{running.url}/api/items?x=1")  # fmt: skip
    head, _, body = out.stdout.partition("\n\n")
    assert head.startswith("HTTP/1.1 401")
    assert body == "Jwt verification fails"
    challenge = f'bearer realm="http://127.0.0.1:{running.port}/api/items", error="invalid_token"'
    assert f"www-authenticate: {challenge}" in head.lower()


@pytest.mark.parametrize(
    ("make", "status", "body"),
    [
        (lambda: token(exp=int(time.time()) - 3600), 401, "Jwt is expired"),
        (lambda: token(iss="https://elsewhere"), 401, "Jwt issuer is not configured"),
        (lambda: token(aud="other"), 403, "Audiences in Jwt are not allowed"),
        (lambda: "not-a-token", 401,
         "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"),
    ],
    ids=["expired", "issuer", "audience", "malformed"],
)  # fmt: skip
def test_invalid_tokens_get_envoys_answers(
    running: Running, make: Any, status: int, body: str
) -> None:
    # Even on a path that needs no token: an invalid one is refused before authorization.
    response = running.get("/public", make())
    assert (response.status_code, response.text) == (status, body)


def test_ip_blocks_with_the_loopback_client(running: Running) -> None:
    assert running.get("/local/x").status_code == 200
    response = running.get("/ten")
    assert (response.status_code, response.text) == (403, "RBAC: access denied")


def test_a_reload_without_the_deny_policy_lifts_it(running: Running) -> None:
    (running.cfg.path / "deny.yaml").unlink()
    allow_admin = ALLOW.replace('paths: ["/public*"]', 'paths: ["/public*", "/admin*"]')
    running.cfg.write("allow.yaml", allow_admin)
    try:
        wait_until(lambda: running.get("/admin").status_code == 200, what="the reload")
        assert running.get("/api/items", token()).status_code == 200  # keys survive a reload
    finally:
        running.cfg.write("deny.yaml", DENY_ADMIN)
        running.cfg.write("allow.yaml", ALLOW)
        wait_until(lambda: running.get("/admin").status_code == 403, what="the restore")


def test_config_shows_the_policies(running: Running) -> None:
    config = running.gw.config()
    text = json.dumps(config)
    assert "default/deny-admin" in text and "default/allow" in text
    assert ISSUER in text
