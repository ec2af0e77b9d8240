"""TLS passthrough: a ``TLS`` listener in Passthrough mode routes raw TLS by SNI (TLSRoute).

Two TLS backends hold their own certificates from their own CA (the gateway has no key for
them). The client reaches each through the gateway by SNI and sees the *backend's*
certificate, which proves the proxy did not terminate TLS, and talks to it end to end. A
ClientHello with an unknown SNI, or none, gets the connection closed without reaching any
backend.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest
import trustme
from cryptography import x509

from tests.gateway.e2e.helpers import (
    ConfigDir,
    backend_service_yaml,
    settings_yaml,
    start_gateway,
)
from tests.support.backends import TlsEchoBackend
from tests.support.gateway import free_port

HOSTS = {"pass-a": "pass-a.example.test", "pass-b": "pass-b.example.test"}


def tls_route_yaml(name: str, hostname: str) -> str:
    return f"""
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [{hostname}]
  rules:
  - backendRefs: [{{name: {name}, port: 443}}]
"""


class Setup:
    def __init__(
        self,
        port: int,
        backend_ca: trustme.CA,
        backends: dict[str, TlsEchoBackend],
        leaves: dict[str, trustme.LeafCert],
    ) -> None:
        self.port, self.backend_ca, self.backends, self.leaves = port, backend_ca, backends, leaves


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    backend_ca = trustme.CA(organization_name="backend-only CA")
    leaves = {name: backend_ca.issue_cert(host) for name, host in HOSTS.items()}
    backends = {
        name: TlsEchoBackend(
            name,
            b"".join(b.bytes() for b in leaf.cert_chain_pems),
            leaf.private_key_pem.bytes(),
        ).start()
        for name, leaf in leaves.items()
    }
    cfg = ConfigDir(tmp_path_factory.mktemp("passthrough") / "cfg")
    http_port, tls_port = free_port(), free_port()
    cfg.gateway(
        http_port,
        f"  - {{name: tls, port: {tls_port}, protocol: TLS, tls: {{mode: Passthrough}}}}\n",
    )
    for name, backend in backends.items():
        cfg.write(f"svc-{name}.yaml", backend_service_yaml(name, backend.port, port=443))
        cfg.write(f"route-{name}.yaml", tls_route_yaml(name, HOSTS[name]))
    cfg.write("settings.yaml", settings_yaml(drainTimeoutSeconds=2))
    gw = start_gateway(cfg)
    yield Setup(tls_port, backend_ca, backends, leaves)
    gw.stop()
    for backend in backends.values():
        backend.stop()


def _context(ca: trustme.CA | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca is not None:
        ca.configure_trust(ctx)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.mark.parametrize("name", ["pass-a", "pass-b"])
def test_routed_by_sni_to_backend_certificate(setup: Setup, name: str) -> None:
    host = HOSTS[name]
    with (
        socket.create_connection(("127.0.0.1", setup.port), timeout=5) as raw,
        _context(setup.backend_ca).wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        tls.sendall(b"hello through the gateway\n")
        reply = tls.recv(1024)
        tls.sendall(b"second line\n")
        reply2 = tls.recv(1024)
    assert der is not None
    served = x509.load_der_x509_certificate(der)
    assert served == x509.load_pem_x509_certificate(setup.leaves[name].cert_chain_pems[0].bytes())
    assert reply == f"{name}:hello through the gateway\n".encode()
    assert reply2 == f"{name}:second line\n".encode()


@pytest.mark.parametrize("sni", ["unknown.example.test", None])
def test_unknown_or_missing_sni_is_closed(setup: Setup, sni: str | None) -> None:
    before = {n: b.connections for n, b in setup.backends.items()}
    with socket.create_connection(("127.0.0.1", setup.port), timeout=5) as raw:
        try:
            with _context(None).wrap_socket(raw, server_hostname=sni) as tls:
                tls.sendall(b"x\n")
                data = tls.recv(1)
        except TimeoutError as exc:
            raise AssertionError("the gateway left the connection open") from exc
        except (ssl.SSLError, ConnectionError):
            data = b""
    assert data == b""
    assert {n: b.connections for n, b in setup.backends.items()} == before
