"""Certificates and server configurations for the PKI benchmarks (:mod:`bench.pki_bench`).

:func:`make_material` builds a mesh PKI with the ``pki`` API, as ``isthmus pki init-root``,
``issue-intermediate`` and ``issue`` would: a root, one cluster intermediate in Istio's
``cacerts`` layout (what ``isthmus pki serve`` reads), and two EC P-256 workload SVIDs, one
for the servers and one for the load generator, each written as ``chain.pem`` (leaf, then
intermediate), ``key.pem`` and ``bundle.pem``. :func:`bootstrap_tokens` writes the CA
service's token file and the matching list the client reads.

The servers under test, rendered as text:

* :func:`nginx_mtls` - nginx terminating TLS 1.2/1.3 with ``ssl_verify_client on`` against
  the bundle, the same certificate type (EC P-256) and the same upstream as Isthmus, with a
  keep-alive pool towards it, like :func:`bench.configs.nginx_proxy`.
* :func:`sidecar_config` - the YAML of an Isthmus sidecar whose inbound port runs
  ``PeerAuthentication`` STRICT (mTLS only) or DISABLE (plaintext): the same configuration
  either way, so the two can be compared.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from bench import configs
from pki.authority import Authority, create_root
from pki.bundle import TrustBundle
from pki.cacerts import write_cacerts
from pki.csr import csr_to_pem, make_csr
from pki.keys import generate_key, write_private_key
from pki.pem import certificates_to_pem
from pki.spiffe import workload_id

TRUST_DOMAIN = "bench.test"
NAMESPACE = "bench"


@dataclass(frozen=True)
class Svid:
    """A workload certificate on disk."""

    directory: Path
    spiffe_id: str

    @property
    def chain(self) -> Path:
        return self.directory / "chain.pem"

    @property
    def key(self) -> Path:
        return self.directory / "key.pem"

    @property
    def bundle(self) -> Path:
        return self.directory / "bundle.pem"


@dataclass(frozen=True)
class Material:
    """Everything :func:`make_material` wrote under ``base``."""

    cacerts: Path
    bundle: Path
    server: Svid
    client: Svid


def _issue(ca: Authority, bundle: TrustBundle, directory: Path, account: str) -> Svid:
    key = generate_key()
    spiffe_id = workload_id(TRUST_DOMAIN, NAMESPACE, account)
    leaf = ca.sign_leaf(key.public_key(), spiffe_id)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "chain.pem").write_bytes(certificates_to_pem([leaf, *ca.full_chain[:-1]]))
    write_private_key(directory / "key.pem", key)
    (directory / "bundle.pem").write_bytes(bundle.to_pem())
    return Svid(directory, str(spiffe_id))


def make_material(base: Path) -> Material:
    """A root, an intermediate (``base/cacerts``) and a server and a client SVID."""
    root = create_root(generate_key(), TRUST_DOMAIN, common_name="Isthmus bench root")
    ca_key = generate_key()
    ca_cert = root.issue_intermediate(ca_key.public_key(), "bench")
    ca = Authority.load(ca_cert, ca_key, (root.cert,))
    bundle = TrustBundle.of([root.cert])
    write_cacerts(base / "cacerts", ca, bundle)
    bundle_path = base / "bundle.pem"
    bundle_path.write_bytes(bundle.to_pem())
    return Material(
        cacerts=base / "cacerts",
        bundle=bundle_path,
        server=_issue(ca, bundle, base / "server", "server"),
        client=_issue(ca, bundle, base / "client", "client"),
    )


def bootstrap_tokens(base: Path, count: int, prefix: str = "w") -> tuple[Path, Path]:
    """``count`` bootstrap tokens, one identity each (``bench/sa/<prefix><i>``).

    Returns the CA service's token file and the client's JSON list of ``{token, body}``, the
    body being a ready ``POST /v1/certificates`` request with a CSR for the token's identity
    (made here so the load generator spends its CPU on requests only). One identity per
    token because the service rate-limits per identity.
    """
    tokens_file = base / "bootstrap-tokens.yaml"
    client_file = base / "ca-identities.json"
    lines: list[str] = []
    entries: list[dict[str, str]] = []
    for i in range(count):
        token = secrets.token_urlsafe(24)
        account = f"{prefix}{i}"
        spiffe_id = workload_id(TRUST_DOMAIN, NAMESPACE, account)
        csr = csr_to_pem(make_csr(generate_key(), spiffe_id)).decode()
        entries.append({"token": token, "body": json.dumps({"csr": csr})})
        lines.append(f'"{token}": {{namespace: {NAMESPACE}, serviceAccount: {account}}}')
    tokens_file.write_text("\n".join(lines) + "\n")
    tokens_file.chmod(0o600)
    client_file.write_text(json.dumps(entries))
    client_file.chmod(0o600)
    return tokens_file, client_file


# ------------------------------------------------------------------------ servers


def nginx_mtls(tmp: Path, port: int, upstream_port: int, server: Svid) -> str:
    """nginx, 1 worker: mTLS on ``port`` (client certificate required), proxy to upstream."""
    return (
        configs._nginx_main(tmp, "nginx-mtls")
        + "http {\n"
        + configs._nginx_http_common(tmp, "nginx-mtls")
        + "    upstream backend {\n"
        f"        server 127.0.0.1:{upstream_port};\n"
        "        keepalive 64;\n"
        f"        keepalive_requests {configs.KEEPALIVE_REQUESTS};\n"
        "    }\n"
        "    server {\n"
        f"        listen 127.0.0.1:{port} ssl backlog=4096;\n"
        f"        ssl_certificate {server.chain};\n"
        f"        ssl_certificate_key {server.key};\n"
        f"        ssl_client_certificate {server.bundle};\n"
        "        ssl_verify_client on;\n"
        "        ssl_verify_depth 2;\n"  # leaf <- intermediate <- root
        "        ssl_protocols TLSv1.2 TLSv1.3;\n"
        "        location / {\n"
        "            proxy_pass http://backend;\n"
        "            proxy_http_version 1.1;\n"
        '            proxy_set_header Connection "";\n'
        "        }\n"
        "    }\n"
        "}\n"
    )


def sidecar_config(mode: str) -> dict[str, str]:
    """The sidecar's YAML (file name -> text): its node, and a mesh-wide PeerAuthentication."""
    settings = f"""\
apiVersion: isthmus.dev/v1alpha1
kind: ProxySettings
metadata: {{name: proxy, namespace: {NAMESPACE}}}
spec:
  node: {{namespace: {NAMESPACE}, workload: server, trustDomain: {TRUST_DOMAIN},
          labels: {{app: server}}}}
"""
    peer_auth = f"""\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: mesh, namespace: istio-system}}
spec:
  mtls: {{mode: {mode}}}
"""
    return {"settings.yaml": settings, "peer-authentication.yaml": peer_auth}
