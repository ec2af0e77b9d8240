"""The CA service's HTTP API over real TLS with httpx, bootstrap tokens as the token checker.

Covers issuance (leaf, chain, bundle in PEM and SPIFFE form, lifetimes), every refusal with its
JSON body followed by a request that succeeds, the per-identity rate limit, the audit lines,
the bootstrap file being reloaded (and a broken file not locking anyone out), and the
service's own certificate (host-name verification, reissue for new connections only).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from pki.authority import Authority, create_root
from pki.bundle import TrustBundle
from pki.cacerts import CaCerts
from pki.csr import csr_to_pem, make_csr
from pki.keys import generate_key
from pki.pem import load_certificates
from pki.service.app import ServiceSettings, build_app
from pki.service.audit import AuditLog
from pki.service.bootstrap import BootstrapTokens, TokenFileError, token_digest
from pki.service.ratelimit import RateLimiter
from pki.service.server import CaServer
from pki.service.server_cert import ServerCertificate, server_names
from pki.spiffe import parse_spiffe_id
from pki.verify import verify_svid

TD = "mesh.example"
WEB = f"spiffe://{TD}/ns/shop/sa/web"
CART = f"spiffe://{TD}/ns/shop/sa/cart"
WEB_TOKEN = "web-token-0123456789abcdef"
CART_TOKEN = "cart-token-0123456789abcdef"
PATH = "/v1/certificates"


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_ca() -> CaCerts:
    root = create_root(generate_key(), TD)
    key = generate_key()
    cert = root.issue_intermediate(key.public_key(), "east")
    return CaCerts(Authority.load(cert, key, root.full_chain), TrustBundle.of([root.cert]))


def csr_body(spiffe_id: str, **extra: Any) -> bytes:
    pem = csr_to_pem(make_csr(generate_key(), parse_spiffe_id(spiffe_id)))
    return json.dumps({"csr": pem.decode(), **extra}).encode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Service:
    def __init__(self, ca: CaCerts, server: CaServer, audit: AuditLog, clock: FakeMonotonic):
        self.ca, self.server, self.audit, self.clock = ca, server, audit, clock

    def client(self) -> httpx.AsyncClient:
        context = ssl.create_default_context(cadata=self.ca.bundle.to_pem().decode())
        return httpx.AsyncClient(base_url=self.server.url, verify=context, trust_env=False)

    def audit_lines(self) -> list[dict[str, Any]]:
        self.audit.close()  # writes every queued line
        assert self.audit.path is not None
        return [json.loads(line) for line in self.audit.path.read_text().splitlines()]


@pytest.fixture
def ca() -> CaCerts:
    return make_ca()


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        f'"{WEB_TOKEN}": {{namespace: shop, serviceAccount: web}}\n'
        f'"sha256:{token_digest(CART_TOKEN).hex()}": {{namespace: shop, serviceAccount: cart}}\n'
    )
    return path


@pytest.fixture
async def service(ca: CaCerts, tokens_file: Path, tmp_path: Path) -> AsyncIterator[Service]:
    clock = FakeMonotonic()
    audit = AuditLog(tmp_path / "audit.jsonl")
    app = build_app(
        ca,
        BootstrapTokens(tokens_file),
        ServiceSettings(TD, max_ttl=datetime.timedelta(hours=24)),
        audit=audit,
        limiter=RateLimiter(burst=5, refill_per_s=1.0, clock=clock),
    )
    dns, ips = server_names("127.0.0.1")
    async with CaServer(app, ServerCertificate(lambda: ca, dns, ips), "127.0.0.1", 0) as server:
        yield Service(ca, server, audit, clock)
    audit.close()


async def issue_ok(client: httpx.AsyncClient, spiffe_id: str = WEB, token: str = WEB_TOKEN) -> Any:
    response = await client.post(PATH, content=csr_body(spiffe_id), headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()


async def test_issues_a_leaf_with_its_chain_and_the_trust_bundle(service: Service) -> None:
    async with service.client() as client:
        response = await client.post(PATH, content=csr_body(WEB), headers=bearer(WEB_TOKEN))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    leaf = x509.load_pem_x509_certificate(body["certificate"].encode())
    chain = load_certificates(body["chain"].encode())
    assert chain[0] == leaf
    assert chain[1:] == [service.ca.authority.cert]  # leaf + intermediate, root in the bundle
    assert TrustBundle.from_pem(body["trustBundle"].encode()) == service.ca.bundle
    assert TrustBundle.from_spiffe_json(json.dumps(body["spiffeBundle"])) == service.ca.bundle
    assert verify_svid(chain, service.ca.bundle, trust_domain=TD) == parse_spiffe_id(WEB)
    assert body["spiffeId"] == WEB
    assert body["serial"] == format(leaf.serial_number, "x")
    lifetime = leaf.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(hours=23, minutes=59) < lifetime <= datetime.timedelta(hours=24)


async def test_a_hashed_token_in_the_file_works(service: Service) -> None:
    async with service.client() as client:
        body = await issue_ok(client, CART, CART_TOKEN)
    assert body["spiffeId"] == CART


async def test_ttl_is_honoured_and_capped_by_the_maximum(service: Service) -> None:
    async with service.client() as client:
        for ttl, hours in (("1h", 1), (7200, 2)):
            response = await client.post(
                PATH, content=csr_body(WEB, ttl=ttl), headers=bearer(WEB_TOKEN)
            )
            assert response.status_code == 200
            leaf = x509.load_pem_x509_certificate(response.json()["certificate"].encode())
            left = leaf.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
            assert (
                datetime.timedelta(hours=hours, minutes=-1)
                < left
                <= datetime.timedelta(hours=hours)
            )

        response = await client.post(
            PATH, content=csr_body(WEB, ttl="25h"), headers=bearer(WEB_TOKEN)
        )
        assert response.status_code == 400
        assert response.json() == {
            "error": "ttl-too-long",
            "message": "the requested lifetime 1d1h is above the maximum 1d",
        }
        await issue_ok(client)


REFUSALS: list[tuple[str, dict[str, str], Any, int, str, str]] = [
    # name, headers, body (bytes, a CSR for an ID, or (ID, more fields)), status, code, message
    ("no token", {}, WEB, 401, "unauthenticated", "Authorization: Bearer <token> header"),
    ("basic auth", {"Authorization": "Basic d2ViOngK"}, WEB, 401, "unauthenticated",
     "must be 'Bearer <token>'"),
    ("unknown token", bearer("nope-0123456789abcdefgh"), WEB, 401, "unauthenticated",
     "unknown bootstrap token"),
    ("another identity", bearer(WEB_TOKEN), CART, 403, "identity-mismatch",
     f"the token proves {WEB}; it may not request {CART}"),
    ("another trust domain", bearer(WEB_TOKEN), "spiffe://other.example/ns/shop/sa/web", 403,
     "identity-mismatch", "may not request spiffe://other.example/ns/shop/sa/web"),
    ("not JSON", bearer(WEB_TOKEN), b"{csr:", 400, "bad-json", "the body is not JSON"),
    ("JSON list", bearer(WEB_TOKEN), b"[]", 400, "bad-json", "must be a JSON object"),
    ("no csr", bearer(WEB_TOKEN), b'{"ttl": "1h"}', 400, "bad-csr", '"csr" is required'),
    ("unknown field", bearer(WEB_TOKEN), b'{"csr": "x", "dns": []}', 400, "bad-field",
     "unknown field 'dns'"),
    ("malformed PEM", bearer(WEB_TOKEN),
     b'{"csr": "-----BEGIN CERTIFICATE REQUEST-----\\nAAAA\\n'
     b'-----END CERTIFICATE REQUEST-----\\n"}', 400, "bad-csr",
     "malformed PEM certificate request"),
    ("not PEM", bearer(WEB_TOKEN), b'{"csr": "hello"}', 400, "bad-csr",
     "no PEM certificate request found"),
    ("bad ttl", bearer(WEB_TOKEN), (WEB, {"ttl": "soon"}), 400, "bad-ttl", "expected a duration"),
    ("zero ttl", bearer(WEB_TOKEN), (WEB, {"ttl": 0}), 400, "bad-ttl", "out of range"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "body", "status", "code", "message"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
async def test_refusals_answer_json_and_the_service_keeps_working(
    service: Service,
    headers: dict[str, str],
    body: Any,
    status: int,
    code: str,
    message: str,
) -> None:
    if isinstance(body, str):
        content = csr_body(body)
    elif isinstance(body, tuple):
        content = csr_body(body[0], **body[1])
    else:
        content = body
    async with service.client() as client:
        response = await client.post(PATH, content=content, headers=headers)
        assert response.status_code == status
        assert response.headers["content-type"] == "application/json"
        document = response.json()
        assert document["error"] == code
        assert message in document["message"]
        if status == 401:
            assert response.headers["www-authenticate"].startswith("Bearer")
        await issue_ok(client)

    lines = service.audit_lines()
    assert [(line["outcome"], line["status"]) for line in lines] == [
        ("refused", status),
        ("issued", 200),
    ]
    refused = lines[0]
    assert refused["reason"] == code
    assert refused["serial"] is None
    assert refused["client"].startswith("127.0.0.1:")
    assert (refused["identity"] is None) == (status == 401)


async def test_a_csr_asking_for_dns_names_is_refused(service: Service) -> None:
    key = generate_key()
    from cryptography.hazmat.primitives import hashes

    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(WEB), x509.DNSName("ca.example")]
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    async with service.client() as client:
        response = await client.post(
            PATH, json={"csr": csr_to_pem(csr).decode()}, headers=bearer(WEB_TOKEN)
        )
        assert response.status_code == 400
        assert response.json()["error"] == "csr-extra-sans"
        await issue_ok(client)


async def test_a_declared_oversized_body_gets_413(service: Service) -> None:
    async with service.client() as client:
        response = await client.post(
            PATH, content=b"x" * (64 * 1024 + 1), headers=bearer(WEB_TOKEN)
        )
        assert response.status_code == 413
        assert response.json() == {
            "error": "body-too-large",
            "message": "the body is larger than 65536 bytes",
        }
        await issue_ok(client)


async def test_a_streamed_oversized_body_is_refused_while_it_is_read(service: Service) -> None:
    """A chunked body with no declared length: the 413 arrives while the body is still open,
    so the limit is applied as the body is read, not once it has all been buffered."""
    context = ssl.create_default_context(cadata=service.ca.bundle.to_pem().decode())
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", service.server.port, ssl=context, server_hostname="localhost"
    )
    try:
        writer.write(
            f"POST {PATH} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {WEB_TOKEN}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"x" * 16384
        for _ in range(5):  # 80 KiB, and the body never ends
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 413 ")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = json.loads(await asyncio.wait_for(reader.readexactly(length), 10))
        assert body["error"] == "body-too-large"
    finally:
        writer.close()
    async with service.client() as client:
        await issue_ok(client)
    assert [line["status"] for line in service.audit_lines()] == [413, 200]


async def test_each_identity_is_rate_limited_with_retry_after(service: Service) -> None:
    async with service.client() as client:
        for _ in range(5):
            await issue_ok(client)
        response = await client.post(PATH, content=csr_body(WEB), headers=bearer(WEB_TOKEN))
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        assert response.json() == {
            "error": "rate-limited",
            "message": f"too many requests for {WEB}: retry in 1 s",
            "retryAfterSeconds": 1,
        }
        # Another identity has its own bucket.
        await issue_ok(client, CART, CART_TOKEN)
        # A refused request counts too: web stays limited until the bucket refills.
        assert (await client.post(PATH, content=b"{", headers=bearer(WEB_TOKEN))).status_code == 429
        service.clock.now += 1.0
        await issue_ok(client)

    lines = service.audit_lines()
    assert [line["status"] for line in lines] == [200] * 5 + [429, 200, 429, 200]
    assert lines[5]["identity"] == "bootstrap:shop/web#1"
    assert lines[5]["reason"] == "rate-limited"


async def test_every_issuance_writes_one_audit_line(service: Service) -> None:
    async with service.client() as client:
        body = await issue_ok(client)
        await issue_ok(client, CART, CART_TOKEN)

    first, second = service.audit_lines()
    assert first["outcome"] == "issued"
    assert first["identity"] == "bootstrap:shop/web#1"
    assert first["spiffe_id"] == WEB
    assert first["serial"] == body["serial"]
    assert first["not_after"] == body["notAfter"]
    assert first["reason"] is None
    assert datetime.datetime.fromisoformat(first["time"].replace("Z", "+00:00"))
    assert set(first) == {
        "time", "outcome", "status", "reason", "message", "identity", "spiffe_id", "serial",
        "not_after", "client",
    }  # fmt: skip
    assert second["spiffe_id"] == CART


async def test_the_token_file_is_reloaded_and_a_broken_one_keeps_the_last_tokens(
    service: Service, tokens_file: Path
) -> None:
    new_token = "new-token-0123456789abcdef"
    async with service.client() as client:
        assert (
            await client.post(PATH, content=csr_body(WEB), headers=bearer(new_token))
        ).status_code == 401

        await asyncio.to_thread(
            tokens_file.write_text, f'"{new_token}": {{namespace: shop, serviceAccount: web}}\n'
        )
        await issue_ok(client, WEB, new_token)
        old = await client.post(PATH, content=csr_body(WEB), headers=bearer(WEB_TOKEN))
        assert old.status_code == 401  # removed from the file

        await asyncio.to_thread(tokens_file.write_text, "this: [is not: a token file\n")
        await issue_ok(client, WEB, new_token)  # the last good tokens stay in force


def test_a_bad_token_file_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    for text, words in (
        ('"short": {namespace: a, serviceAccount: b}\n', "at least 16 characters"),
        (f'"{WEB_TOKEN}": {{namespace: a}}\n', "{namespace: ..., serviceAccount: ...}"),
        (f'"{WEB_TOKEN}": {{namespace: "a/b", serviceAccount: c}}\n', "not a Kubernetes"),
        ('"sha256:abc": {namespace: a, serviceAccount: b}\n', "64 hex digits"),
        ("- a list\n", "expected a mapping"),
    ):
        path.write_text(text)
        with pytest.raises(TokenFileError) as caught:
            BootstrapTokens(path)
        assert words in str(caught.value)
        assert "entry 1" in str(caught.value) or "mapping" in words
    with pytest.raises(TokenFileError, match="cannot read"):
        BootstrapTokens(tmp_path / "missing.yaml")


async def test_unknown_paths_and_methods_answer_json(service: Service) -> None:
    async with service.client() as client:
        missing = await client.post("/v1/nothing", headers=bearer(WEB_TOKEN))
        wrong = await client.get(PATH)
    assert missing.status_code == 404
    assert missing.json()["error"] == "not-found"
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "bad-method"


async def test_the_service_certificate_is_checked_by_host_name(service: Service) -> None:
    port = service.server.port
    context = ssl.create_default_context(cadata=service.ca.bundle.to_pem().decode())
    async with httpx.AsyncClient(verify=context, trust_env=False) as client:
        for host in ("127.0.0.1", "localhost"):
            response = await client.post(
                f"https://{host}:{port}{PATH}", content=csr_body(WEB), headers=bearer(WEB_TOKEN)
            )
            assert response.status_code == 200
    # A bundle without our root refuses the service.
    stranger = make_ca()
    context = ssl.create_default_context(cadata=stranger.bundle.to_pem().decode())
    async with httpx.AsyncClient(verify=context, trust_env=False) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.post(f"{service.server.url}{PATH}", content=b"{}")


def _server_serial(response: httpx.Response) -> int:
    stream = response.extensions["network_stream"]
    der = stream.get_extra_info("ssl_object").getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert uris.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"spiffe://{TD}/isthmus/ca-service"
    ]
    return cert.serial_number


async def test_a_reissued_service_certificate_is_used_by_new_connections_only(
    service: Service,
) -> None:
    async with service.client() as live:
        before = await live.post(PATH, content=csr_body(WEB), headers=bearer(WEB_TOKEN))
        old_serial = _server_serial(before)
        service.server.certificate.renew()

        async with service.client() as fresh:
            response = await fresh.post(PATH, content=csr_body(WEB), headers=bearer(WEB_TOKEN))
            assert response.status_code == 200
            assert _server_serial(response) != old_serial

        # The kept-alive connection goes on with the certificate it was made with.
        again = await live.post(PATH, content=csr_body(WEB), headers=bearer(WEB_TOKEN))
        assert again.status_code == 200
        assert _server_serial(again) == old_serial
