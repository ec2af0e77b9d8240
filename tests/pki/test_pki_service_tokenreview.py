"""The CA service checking tokens with Kubernetes TokenReviews, against the API double.

The service reaches the double only through the official ``kubernetes`` client, configured
from the kubeconfig the double writes, exactly as ``isthmus pki serve --kubeconfig`` does.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pki.authority import Authority, create_root
from pki.bundle import TrustBundle
from pki.cacerts import CaCerts
from pki.csr import csr_to_pem, make_csr
from pki.keys import generate_key
from pki.service.app import ServiceSettings, build_app
from pki.service.audit import AuditLog
from pki.service.server import CaServer
from pki.service.server_cert import ServerCertificate, server_names
from pki.service.tokenreview import TokenReviewChecker, kube_api_client
from pki.spiffe import parse_spiffe_id
from tests.support.kube_api import KubeApiDouble

TD = "mesh.example"
WEB = f"spiffe://{TD}/ns/shop/sa/web"
CART = f"spiffe://{TD}/ns/shop/sa/cart"
PATH = "/v1/certificates"


def csr_body(spiffe_id: str) -> bytes:
    pem = csr_to_pem(make_csr(generate_key(), parse_spiffe_id(spiffe_id)))
    return json.dumps({"csr": pem.decode()}).encode()


@pytest.fixture
def kube() -> Iterator[KubeApiDouble]:
    with KubeApiDouble() as double:
        yield double


@pytest.fixture
async def service(kube: KubeApiDouble, tmp_path: Path) -> AsyncIterator[tuple[CaServer, CaCerts]]:
    root = create_root(generate_key(), TD)
    key = generate_key()
    ca = CaCerts(
        Authority.load(root.issue_intermediate(key.public_key(), "east"), key, root.full_chain),
        TrustBundle.of([root.cert]),
    )
    api_client = kube_api_client(kubeconfig=kube.write_kubeconfig(tmp_path / "kubeconfig"))
    audit = AuditLog(tmp_path / "audit.jsonl")
    app = build_app(ca, TokenReviewChecker(api_client), ServiceSettings(TD), audit=audit)
    dns, ips = server_names("127.0.0.1")
    try:
        async with CaServer(app, ServerCertificate(lambda: ca, dns, ips), "127.0.0.1", 0) as server:
            yield server, ca
    finally:
        audit.close()
        api_client.close()


def client(ca: CaCerts, server: CaServer) -> httpx.AsyncClient:
    context = ssl.create_default_context(cadata=ca.bundle.to_pem().decode())
    return httpx.AsyncClient(base_url=server.url, verify=context, trust_env=False)


async def post(http: httpx.AsyncClient, spiffe_id: str, token: str) -> httpx.Response:
    return await http.post(
        PATH, content=csr_body(spiffe_id), headers={"Authorization": f"Bearer {token}"}
    )


def reviews(kube: KubeApiDouble) -> list[int]:
    return [r.status for r in kube.requests if r.path.endswith("/tokenreviews")]


async def test_a_service_account_token_gets_a_certificate_for_that_account(
    kube: KubeApiDouble, service: tuple[CaServer, CaCerts]
) -> None:
    server, ca = service
    token = kube.register_service_account_token(
        "shop", "web", audiences=("isthmus-ca",), pod_name="web-0"
    )
    async with client(ca, server) as http:
        response = await post(http, WEB, token)
    assert response.status_code == 200, response.text
    assert response.json()["spiffeId"] == WEB
    assert reviews(kube) == [201]  # one TokenReview, through the kubernetes client


async def test_a_token_for_another_account_is_refused_with_403(
    kube: KubeApiDouble, service: tuple[CaServer, CaCerts]
) -> None:
    server, ca = service
    token = kube.register_service_account_token("shop", "web", audiences=("isthmus-ca",))
    async with client(ca, server) as http:
        response = await post(http, CART, token)
        assert response.status_code == 403
        assert response.json() == {
            "error": "identity-mismatch",
            "message": f"the token proves {WEB}; it may not request {CART}",
        }
        assert (await post(http, WEB, token)).status_code == 200


@pytest.mark.parametrize("case", ["unknown", "wrong audience", "expired", "revoked"])
async def test_tokens_the_api_server_does_not_accept_get_401(
    kube: KubeApiDouble, service: tuple[CaServer, CaCerts], case: str
) -> None:
    server, ca = service
    if case == "unknown":
        token = "never-registered"
    elif case == "wrong audience":  # a token for the API server itself is not for the CA
        token = kube.register_service_account_token("shop", "web")
    else:
        token = kube.register_service_account_token("shop", "web", audiences=("isthmus-ca",))
        (kube.expire_token if case == "expired" else kube.revoke_token)(token)
    async with client(ca, server) as http:
        response = await post(http, WEB, token)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert response.json()["error"] == "unauthenticated"
        assert response.json()["message"].startswith("TokenReview: ")
        good = kube.register_service_account_token("shop", "web", audiences=("isthmus-ca",))
        assert (await post(http, WEB, good)).status_code == 200


async def test_the_api_server_being_down_is_503_not_a_bad_token(
    kube: KubeApiDouble, service: tuple[CaServer, CaCerts]
) -> None:
    server, ca = service
    token = kube.register_service_account_token("shop", "web", audiences=("isthmus-ca",))
    await asyncio.to_thread(kube.stop)
    async with client(ca, server) as http:
        response = await post(http, WEB, token)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "token-check-unavailable"


async def test_a_slow_review_does_not_hold_the_event_loop(
    kube: KubeApiDouble, service: tuple[CaServer, CaCerts], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one TokenReview hangs in the API server, other requests are still answered: the
    synchronous client runs in a worker thread."""
    server, ca = service
    token = kube.register_service_account_token("shop", "web", audiences=("isthmus-ca",))
    entered, release = threading.Event(), threading.Event()
    real_review = kube.tokens.review

    def slow_review(spec_token: str, audiences: list[str]) -> dict[str, Any]:
        entered.set()
        release.wait(30)
        return real_review(spec_token, audiences)

    monkeypatch.setattr(kube.tokens, "review", slow_review)
    async with client(ca, server) as http, client(ca, server) as other:
        pending = asyncio.create_task(post(http, WEB, token))
        try:
            assert await asyncio.to_thread(entered.wait, 10)
            no_token = await asyncio.wait_for(other.post(PATH, content=b"{}"), 5)
            assert no_token.status_code == 401
            assert not pending.done()
        finally:
            release.set()
        assert (await pending).status_code == 200
