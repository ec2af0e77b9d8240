"""Sidecars talking: outbound routing, ISTIO_MUTUAL over h2, server identity, authz principals.

Three sidecars run as real processes with SVIDs from one mesh CA:

- ``web`` (``shop/sa/web``) in front of an HTTP/1.1 echo app: STRICT, an access log, and an
  AuthorizationPolicy allowing only the principal ``mesh.test/ns/shop/sa/cart``;
- ``cart`` (``shop/sa/cart``) and ``other`` (``shop/sa/other``), whose apps call Services
  through their outbound port: ``web`` (no DestinationRule: ISTIO_MUTUAL by default),
  ``web-pinned`` (a DestinationRule expecting the server ``shop/sa/web``) and ``web-wrong`` (a
  DestinationRule expecting ``shop/sa/payments``), all three with web's inbound port as
  their endpoint.

A plain HTTP client plays the apps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.gateway.mtls.mtls_support import (
    TRUST_DOMAIN,
    MeshPki,
    Sidecar,
    allow_principals,
    destination_rule,
    peer_authentication,
    proxy_settings,
    service,
    sidecar_dir,
    start_sidecar,
)
from tests.support.backends import HttpBackend
from tests.support.gateway import free_port

WEB_ID = f"spiffe://{TRUST_DOMAIN}/ns/shop/sa/web"


@dataclass
class Mesh:
    web: Sidecar
    cart: Sidecar
    other: Sidecar
    app: HttpBackend
    access_log: Path


def client_config(base: Path, name: str, web_inbound: int) -> Path:
    return sidecar_dir(
        base / f"cfg-{name}",
        proxy_settings("shop", name, {"app": name}),
        service("web", "shop", web_inbound),
        service("web-pinned", "shop", web_inbound),
        service("web-wrong", "shop", web_inbound),
        service("web-ns", "shop", web_inbound),
        service("web-other-ns", "shop", web_inbound),
        destination_rule(
            "ns",
            "shop",
            "web-ns",
            f'{{mode: ISTIO_MUTUAL, subjectAltNames: ["spiffe://{TRUST_DOMAIN}/ns/shop/*"]}}',
        ),
        destination_rule(
            "other-ns",
            "shop",
            "web-other-ns",
            f'{{mode: ISTIO_MUTUAL, subjectAltNames: ["spiffe://{TRUST_DOMAIN}/ns/sho/*"]}}',
        ),
        destination_rule(
            "pinned", "shop", "web-pinned", f'{{mode: ISTIO_MUTUAL, subjectAltNames: ["{WEB_ID}"]}}'
        ),
        destination_rule(
            "wrong",
            "shop",
            "web-wrong",
            f'{{mode: ISTIO_MUTUAL, subjectAltNames: ["spiffe://{TRUST_DOMAIN}/ns/shop/sa/payments"]}}',
        ),
    )


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    base = tmp_path_factory.mktemp("sidecars")
    pki = MeshPki()
    app = HttpBackend("web").start()
    log = base / "web-access.log"
    web_cfg = sidecar_dir(
        base / "cfg-web",
        proxy_settings("shop", "web", {"app": "web"}, telemetry=f"{{accessLog: {{path: {log}}}}}"),
        peer_authentication("web", "shop", "STRICT", selector="app: web"),
        allow_principals("only-cart", "shop", [f"{TRUST_DOMAIN}/ns/shop/sa/cart"]),
    )
    web = start_sidecar(web_cfg, pki.issue(base / "web", "shop", "web"), app.port)
    sidecars = [web]
    try:
        for name in ("cart", "other"):
            cfg = client_config(base, name, web.inbound)
            sidecars.append(start_sidecar(cfg, pki.issue(base / name, "shop", name), free_port()))
        yield Mesh(web, sidecars[1], sidecars[2], app, log)
    finally:
        for s in sidecars:
            s.stop()
        app.stop()


def call(sidecar: Sidecar, host: str, path: str = "/echo") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{sidecar.outbound}{path}", headers={"host": host},
                     timeout=10)  # fmt: skip


@pytest.mark.parametrize("host", ["web", "web.shop", "web.shop.svc", "web.shop.svc.cluster.local",
                                  "web:80", "web.shop.svc.cluster.local:80"])  # fmt: skip
def test_outbound_routes_by_service_name_through_mtls(mesh: Mesh, host: str) -> None:
    r = call(mesh.cart, host)
    assert r.status_code == 200
    assert r.json()["backend"] == "web"


def test_unknown_host_gets_no_route(mesh: Mesh) -> None:
    r = call(mesh.cart, "payments.shop")
    assert r.status_code == 404


def last_access_entry(log: Path, path: str) -> dict[str, object]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if log.exists():
            entries = [json.loads(line) for line in log.read_text().splitlines() if line]
            found = [e for e in entries if e.get("path") == path]
            if found:
                return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no access log entry for {path}")


def test_alpn_h2_between_sidecars_and_the_peer_identity_arrives(mesh: Mesh) -> None:
    r = call(mesh.cart, "web", "/echo?alpn-check")
    assert r.status_code == 200
    # The app itself gets HTTP/1.1 from its sidecar ...
    assert r.json()["http_version"] == "1.1"
    # ... while the inbound listener saw HTTP/2 (ALPN h2) from cart's sidecar, over mTLS.
    entry = last_access_entry(mesh.access_log, "/echo")
    assert entry["protocol"] == "HTTP/2"
    assert entry["downstream_peer_principal"] == f"spiffe://{TRUST_DOMAIN}/ns/shop/sa/cart"


def test_server_identity_in_subject_alt_names_is_accepted(mesh: Mesh) -> None:
    r = call(mesh.cart, "web-pinned")
    assert r.status_code == 200
    assert r.json()["backend"] == "web"


def test_server_identity_not_in_subject_alt_names_is_refused(mesh: Mesh) -> None:
    before = len(mesh.app.seen_paths())
    r = call(mesh.cart, "web-wrong", "/never")
    assert r.status_code == 503
    assert r.headers.get("x-envoy-response-flags", "UF") == "UF"
    assert WEB_ID in r.text and "payments" in r.text, r.text
    assert "/never" not in mesh.app.seen_paths()[before:]
    # The same server is fine for a cluster that expects it.
    assert call(mesh.cart, "web-pinned").status_code == 200


def test_a_namespace_prefix_in_subject_alt_names_matches_its_identities_only(mesh: Mesh) -> None:
    # Istio's prefix form, as the federation controller writes it for other clusters'
    # services: any identity of the namespace, and nothing in a namespace it only prefixes.
    assert call(mesh.cart, "web-ns").status_code == 200
    refused = call(mesh.cart, "web-other-ns")
    assert refused.status_code == 503 and WEB_ID in refused.text, refused.text


def test_authz_principals_with_the_mtls_identity(mesh: Mesh) -> None:
    allowed = call(mesh.cart, "web")
    assert allowed.status_code == 200
    denied = call(mesh.other, "web")
    assert denied.status_code == 403
    assert denied.text == "RBAC: access denied"


def test_metrics_flag_the_refused_server(mesh: Mesh) -> None:
    call(mesh.cart, "web-wrong")
    text = mesh.cart.process.metrics()
    lines = [ln for ln in text.splitlines() if ln.startswith("istio_requests_total{")]
    assert any('response_flags="UF"' in ln and 'response_code="503"' in ln for ln in lines)
