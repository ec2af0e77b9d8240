"""PERMISSIVE: one inbound port serves plaintext and mTLS, told apart by the first byte.

The sidecar runs without any PeerAuthentication (Istio's default is PERMISSIVE) plus a
namespace-wide one saying PERMISSIVE explicitly on a second sidecar. Real clients use the
same port in each way: plaintext HTTP/1.1, plaintext HTTP/2 with prior knowledge, mTLS with
ALPN ``http/1.1`` and with ALPN ``h2``. A TLS client without a certificate is refused (TLS on
a mesh port means mTLS). An AuthorizationPolicy on ``principals`` shows that only the mTLS
requests carry the peer identity.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.gateway.mtls.mtls_support import (
    TRUST_DOMAIN,
    MeshPki,
    Sidecar,
    Svid,
    allow_principals,
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
    default: Sidecar  # no PeerAuthentication at all
    explicit: Sidecar  # PERMISSIVE, and only shop/sa/cart allowed
    client: Svid
    app: HttpBackend


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("permissive")
    pki = MeshPki()
    app = HttpBackend("web").start()
    server = pki.issue(base / "server", "shop", "web")
    default = start_sidecar(
        sidecar_dir(base / "cfg-default", proxy_settings("shop", "web", {"app": "web"})),
        server,
        app.port,
    )
    explicit = start_sidecar(
        sidecar_dir(
            base / "cfg-explicit",
            proxy_settings("shop", "web", {"app": "web"}),
            peer_authentication("shop", "shop", "PERMISSIVE"),
            allow_principals("only-cart", "shop", [f"{TRUST_DOMAIN}/ns/shop/sa/cart"]),
        ),
        server,
        app.port,
    )
    yield Setup(default, explicit, pki.issue(base / "client", "shop", "cart"), app)
    default.stop()
    explicit.stop()
    app.stop()


def test_config_shows_permissive(setup: Setup) -> None:
    for sidecar in (setup.default, setup.explicit):
        snapshot = sidecar.process.config()["snapshot"]
        assert isinstance(snapshot, dict)
        inbound = [p for p in snapshot["ports"] if p["port"] == sidecar.inbound]
        assert inbound[0]["mtls"] == "PERMISSIVE"


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
def test_plaintext_is_served(setup: Setup, http2: bool) -> None:
    with httpx.Client(http1=not http2, http2=http2) as client:
        r = client.get(f"http://127.0.0.1:{setup.default.inbound}/echo")
    assert r.status_code == 200
    assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert r.json()["headers"]["x-forwarded-proto"] == "http"


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2"])
def test_mtls_is_served_on_the_same_port(setup: Setup, http2: bool) -> None:
    ctx = mtls_client_context(setup.client, setup.client.bundle)
    with httpx.Client(verify=ctx, http1=not http2, http2=http2) as client:
        r = client.get(f"https://127.0.0.1:{setup.default.inbound}/echo")
    assert r.status_code == 200
    assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert r.json()["headers"]["x-forwarded-proto"] == "https"


def test_tls_without_a_client_certificate_is_refused(setup: Setup) -> None:
    before = rejections(setup.default.process, "mtls")
    ctx = mtls_client_context(None, setup.client.bundle)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"https://127.0.0.1:{setup.default.inbound}/echo", verify=ctx, timeout=5)
    assert rejections(setup.default.process, "mtls") == before + 1
    # Plaintext still works afterwards.
    assert httpx.get(f"http://127.0.0.1:{setup.default.inbound}/echo").status_code == 200


def test_only_mtls_requests_carry_the_peer_principal(setup: Setup) -> None:
    port = setup.explicit.inbound
    plain = httpx.get(f"http://127.0.0.1:{port}/echo", timeout=5)
    assert plain.status_code == 403  # no peer identity: principals match nothing
    ctx = mtls_client_context(setup.client, setup.client.bundle)
    mutual = httpx.get(f"https://127.0.0.1:{port}/echo", verify=ctx, timeout=5)
    assert mutual.status_code == 200
