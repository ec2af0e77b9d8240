"""The handshake matrix against a STRICT inbound listener (PeerAuthentication STRICT).

A sidecar serves an app behind a STRICT port. Real TLS clients present each certificate of
the matrix: a valid SVID is served; an expired one, a not-yet-valid one, one from another
root, one from another trust domain (signed by our own CA), one with two URI SANs, a CA
certificate used as a leaf, and no certificate at all are each refused: no HTTP answer
comes back, and the sidecar counts the refusal. After every refusal a valid client is
served again on a fresh connection.
"""

from __future__ import annotations

import datetime
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.gateway.mtls.mtls_support import (
    NOW,
    TRUST_DOMAIN,
    MeshPki,
    Sidecar,
    Svid,
    mtls_client_context,
    peer_authentication,
    proxy_settings,
    rejections,
    sidecar_dir,
    start_sidecar,
)
from tests.support.backends import HttpBackend


@dataclass
class Setup:
    pki: MeshPki
    sidecar: Sidecar
    app: HttpBackend
    valid: Svid
    base: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("matrix")
    pki = MeshPki()
    server = pki.issue(base / "server", "shop", "web")
    app = HttpBackend("web").start()
    cfg = sidecar_dir(
        base / "cfg",
        proxy_settings("shop", "web", {"app": "web"}),
        peer_authentication("mesh", "istio-system", "STRICT"),
    )
    sidecar = start_sidecar(cfg, server, app.port)
    yield Setup(pki, sidecar, app, pki.issue(base / "client", "shop", "cart"), base)
    sidecar.stop()
    app.stop()


def request_over_tls(port: int, ctx: ssl.SSLContext) -> bytes:
    """Handshake, send one request, return what comes back (b"" when the server closed).
    An ``ssl.SSLError`` or ``OSError`` means the server refused during or after the
    handshake."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        tls.sendall(b"GET /echo HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n")
        answer = b""
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                return answer
            answer += chunk


def assert_refused(setup: Setup, svid: Svid | None) -> None:
    ctx = mtls_client_context(svid, setup.valid.bundle)
    try:
        answer = request_over_tls(setup.sidecar.inbound, ctx)
    except (ssl.SSLError, OSError):
        answer = b""
    assert not answer.startswith(b"HTTP/"), answer[:200]


def assert_served(setup: Setup) -> None:
    ctx = mtls_client_context(setup.valid, setup.valid.bundle)
    r = httpx.get(f"https://127.0.0.1:{setup.sidecar.inbound}/echo", verify=ctx, timeout=5)
    assert r.status_code == 200
    assert r.json()["backend"] == "web"


Maker = Callable[[Setup], Svid | None]

MATRIX: dict[str, Maker] = {
    "expired": lambda s: s.pki.issue(
        s.base / "expired",
        "shop",
        "cart",
        now=NOW - datetime.timedelta(days=3),
        ttl=datetime.timedelta(hours=1),
    ),
    "not-yet-valid": lambda s: s.pki.issue(
        s.base / "future",
        "shop",
        "cart",
        now=NOW + datetime.timedelta(days=2),
        ttl=datetime.timedelta(hours=1),
    ),
    "wrong-root": lambda s: MeshPki(name="other root").issue(s.base / "other", "shop", "cart"),
    "wrong-trust-domain": lambda s: s.pki.forge(
        s.base / "foreign", ["spiffe://elsewhere.test/ns/shop/sa/cart"]
    ),
    "two-uri-sans": lambda s: s.pki.forge(
        s.base / "two",
        [f"spiffe://{TRUST_DOMAIN}/ns/shop/sa/cart", f"spiffe://{TRUST_DOMAIN}/ns/shop/sa/web"],
    ),
    "ca-as-leaf": lambda s: s.pki.forge(
        s.base / "ca-leaf", [f"spiffe://{TRUST_DOMAIN}/ns/shop/sa/cart"], ca=True
    ),
    "no-client-certificate": lambda s: None,
}


def test_valid_svid_is_served(setup: Setup) -> None:
    assert_served(setup)


@pytest.mark.parametrize("case", list(MATRIX))
def test_bad_client_certificate_is_refused(setup: Setup, case: str) -> None:
    svid = MATRIX[case](setup)
    before = rejections(setup.sidecar.process, "mtls")
    assert_refused(setup, svid)
    # The refusal is counted (handshake failures and SVID-rule failures alike) ...
    assert rejections(setup.sidecar.process, "mtls") == before + 1
    # ... and the next valid client is served.
    assert_served(setup)


def test_svid_rule_failures_name_the_rule(setup: Setup) -> None:
    """Chain-valid certificates that break an SVID rule are refused after the handshake,
    and the reason says which rule."""
    assert_refused(setup, MATRIX["two-uri-sans"](setup))
    assert rejections(setup.sidecar.process, "mtls peer leaf-uri-sans") >= 1
    assert_refused(setup, MATRIX["wrong-trust-domain"](setup))
    assert rejections(setup.sidecar.process, "mtls peer trust-domain") >= 1


def test_plaintext_is_refused_on_a_strict_port(setup: Setup) -> None:
    before = rejections(setup.sidecar.process, "mtls plaintext")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{setup.sidecar.inbound}/echo", timeout=5)
    assert rejections(setup.sidecar.process, "mtls plaintext") == before + 1
    assert_served(setup)
