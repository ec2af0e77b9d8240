"""New certificate material serves new connections; a live connection keeps working.

A STRICT sidecar runs with static credential files. A client holds one keep-alive mTLS
connection open. The files are then replaced with a renewed SVID and a bundle that also
holds a second root. The test checks, with real TLS sockets:

- new connections are served with the new certificate (and ``/config`` reports its serial);
- the live connection still answers, still over the handshake it made with the old one;
- a client whose certificate comes from the second root is accepted on new connections (the
  listener follows the bundle change), where it was refused before.
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import httpx
from cryptography import x509

from pki.bundle import TrustBundle
from tests.gateway.mtls.mtls_support import (
    MeshPki,
    Svid,
    mtls_client_context,
    peer_authentication,
    proxy_settings,
    sidecar_dir,
    start_sidecar,
)
from tests.support.backends import HttpBackend


def read_response(tls: ssl.SSLSocket) -> bytes:
    """One HTTP/1.1 response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        assert chunk, "connection closed"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += tls.recv(65536)
    return head


def ask(tls: ssl.SSLSocket) -> bytes:
    tls.sendall(b"GET /echo HTTP/1.1\r\nhost: web\r\n\r\n")
    return read_response(tls)


def served_serial(port: int, ctx: ssl.SSLContext) -> int:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        assert ask(tls).startswith(b"HTTP/1.1 200")
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


def replace(svid_dir: Path, fresh: Svid) -> None:
    """Move the new files into place one by one, as a secret volume update would."""
    for name in ("chain.pem", "key.pem", "bundle.pem"):
        tmp = svid_dir / f".{name}.new"
        tmp.write_bytes((fresh.directory / name).read_bytes())
        tmp.replace(svid_dir / name)


def test_new_material_for_new_connections_only(tmp_path: Path) -> None:
    pki = MeshPki()
    other = MeshPki(name="second root")
    both = TrustBundle.of([pki.root.cert, other.root.cert])
    app = HttpBackend("web").start()
    served = pki.issue(tmp_path / "served", "shop", "web")
    old_serial = served.leaf.serial_number
    cfg = sidecar_dir(
        tmp_path / "cfg",
        proxy_settings("shop", "web", {"app": "web"}),
        peer_authentication("strict", "shop", "STRICT"),
    )
    sidecar = start_sidecar(cfg, served, app.port)
    trust_both = tmp_path / "both.pem"
    trust_both.write_bytes(both.to_pem())
    client = pki.issue(tmp_path / "client", "shop", "cart")
    ctx = mtls_client_context(client, trust_both)
    stranger = other.issue(tmp_path / "stranger", "shop", "cart")
    stranger_ctx = mtls_client_context(stranger, trust_both)
    try:
        live_raw = socket.create_connection(("127.0.0.1", sidecar.inbound), timeout=5)
        live = ctx.wrap_socket(live_raw)
        assert ask(live).startswith(b"HTTP/1.1 200")
        assert served_serial(sidecar.inbound, ctx) == old_serial
        # Before the swap the second root is not trusted.
        try:
            refused = served_serial(sidecar.inbound, stranger_ctx)
        except (ssl.SSLError, OSError, AssertionError):
            refused = None
        assert refused is None

        renewed = pki.issue(tmp_path / "renewed", "shop", "web", bundle=both)
        replace(served.directory, renewed)
        new_serial = renewed.leaf.serial_number
        deadline = time.monotonic() + 10
        while served_serial(sidecar.inbound, ctx) != new_serial:
            assert time.monotonic() < deadline, "the new certificate was never served"
            time.sleep(0.1)
        identity = sidecar.process.config()["identity"]
        assert isinstance(identity, dict)
        assert identity["serial"] == f"{new_serial:x}"
        assert identity["bundle_roots"] == 2

        # The live connection still works, on the handshake it made before the swap.
        assert ask(live).startswith(b"HTTP/1.1 200")
        der = live.getpeercert(binary_form=True)
        assert der is not None
        assert x509.load_der_x509_certificate(der).serial_number == old_serial
        live.close()

        # New connections follow the new bundle: the second root is trusted now.
        assert served_serial(sidecar.inbound, stranger_ctx) == new_serial
        r = httpx.get(f"https://127.0.0.1:{sidecar.inbound}/echo", verify=ctx, timeout=5)
        assert r.status_code == 200
    finally:
        sidecar.stop()
        app.stop()
