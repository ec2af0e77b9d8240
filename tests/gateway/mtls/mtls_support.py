"""Shared pieces of the mTLS tests: a mesh PKI made with ``pki``, sidecar configs and clients.

:class:`MeshPki` makes a root and a cluster intermediate with the ``pki`` Python API (backdated
so that expired and not-yet-valid leaves can be issued under them), issues workload SVIDs, and
forges the broken certificates of the handshake matrix (two URI SANs, a foreign trust domain,
a CA certificate as leaf) by signing with the intermediate's key directly. :func:`sidecar_dir`
writes a sidecar's configuration directory, :func:`start_sidecar` runs ``isthmus gateway run
--role sidecar`` with static credentials, and :func:`mtls_client_context` builds the ``ssl``
context a real client (httpx, a raw socket) presents a workload certificate with.
"""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from pki.authority import Authority, create_root
from pki.bundle import TrustBundle
from pki.keys import PrivateKey, generate_key, private_key_to_pem
from pki.pem import certificates_to_pem
from pki.spiffe import SpiffeId, workload_id
from tests.support.gateway import GatewayProcess, free_port

TRUST_DOMAIN = "mesh.test"
NOW = datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Svid:
    """A workload certificate on disk: ``chain.pem`` (leaf, intermediate), ``key.pem``,
    ``bundle.pem``."""

    directory: Path
    spiffe_id: str
    leaf: x509.Certificate

    @property
    def chain(self) -> Path:
        return self.directory / "chain.pem"

    @property
    def key(self) -> Path:
        return self.directory / "key.pem"

    @property
    def bundle(self) -> Path:
        return self.directory / "bundle.pem"

    def args(self) -> list[str]:
        return ["--cert", str(self.chain), "--key", str(self.key), "--bundle", str(self.bundle)]


class MeshPki:
    """A root and one intermediate for ``trust_domain``, valid from 30 days ago."""

    def __init__(self, trust_domain: str = TRUST_DOMAIN, *, name: str = "root") -> None:
        self.trust_domain = trust_domain
        start = NOW - datetime.timedelta(days=30)
        self.root = create_root(generate_key(), trust_domain, common_name=name, now=start)
        key = generate_key()
        cert = self.root.issue_intermediate(key.public_key(), "east", now=start)
        self.ca = Authority.load(cert, key, (self.root.cert,))
        self.bundle = TrustBundle.of([self.root.cert])

    def spiffe_id(self, namespace: str, account: str) -> SpiffeId:
        return workload_id(self.trust_domain, namespace, account)

    def issue(
        self,
        directory: Path,
        namespace: str,
        account: str,
        *,
        now: datetime.datetime | None = None,
        ttl: datetime.timedelta = datetime.timedelta(hours=24),
        bundle: TrustBundle | None = None,
    ) -> Svid:
        key = generate_key()
        leaf = self.ca.sign_leaf(key.public_key(), self.spiffe_id(namespace, account), ttl=ttl,
                                 now=now)  # fmt: skip
        return write_svid(directory, leaf, key, self.ca, bundle or self.bundle)

    def forge(self, directory: Path, uris: list[str], *, ca: bool = False) -> Svid:
        """A certificate our CA would never issue: any URI SANs, or cA=true with keyCertSign."""
        key = generate_key()
        usage = x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=False,
            encipher_only=False, decipher_only=False,
        )  # fmt: skip
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.ca.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(minutes=5))
            .not_valid_after(NOW + datetime.timedelta(hours=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
                critical=True,
            )
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca.key.public_key()),
                critical=False,
            )
            .sign(self.ca.key, hashes.SHA256())
        )
        return write_svid(directory, leaf, key, self.ca, self.bundle)


def write_svid(
    directory: Path, leaf: x509.Certificate, key: PrivateKey, ca: Authority, bundle: TrustBundle
) -> Svid:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "chain.pem").write_bytes(certificates_to_pem([leaf, ca.cert]))
    (directory / "key.pem").write_bytes(private_key_to_pem(key))
    (directory / "bundle.pem").write_bytes(bundle.to_pem())
    uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    first = uris.get_values_for_type(x509.UniformResourceIdentifier)
    return Svid(directory, first[0] if first else "", leaf)


def mtls_client_context(
    svid: Svid | None, trust: Path, *, alpn: list[str] | None = None
) -> ssl.SSLContext:
    """What a client presents: ``svid`` (or nothing), trusting the bundle file ``trust``.
    Host names are not checked: workloads are known by SPIFFE ID."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=str(trust))
    if svid is not None:
        ctx.load_cert_chain(str(svid.chain), str(svid.key))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


# -- sidecar configuration --------------------------------------------------------------------


def proxy_settings(namespace: str, workload: str, labels: dict[str, str], **spec: object) -> str:
    label_text = ", ".join(f"{k}: {v}" for k, v in labels.items())
    extra = "".join(f"  {k}: {v}\n" for k, v in spec.items())
    return f"""
apiVersion: isthmus.dev/v1alpha1
kind: ProxySettings
metadata: {{name: proxy, namespace: {namespace}}}
spec:
  node: {{namespace: {namespace}, workload: {workload}, trustDomain: {TRUST_DOMAIN},
          labels: {{{label_text}}}}}
{extra}"""


def service(name: str, namespace: str, endpoint_port: int, *, port: int = 80,
            service_account: str | None = None) -> str:  # fmt: skip
    """A Service whose one endpoint is ``127.0.0.1:endpoint_port`` (a sidecar's inbound port)."""
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  ports: [{{name: http, port: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-0
  namespace: {namespace}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
endpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]
ports: [{{name: http, port: {endpoint_port}}}]
"""


def peer_authentication(name: str, namespace: str, mode: str, *, selector: str = "",
                        extra: str = "") -> str:  # fmt: skip
    sel = f"  selector: {{matchLabels: {{{selector}}}}}\n" if selector else ""
    return f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{sel}  mtls: {{mode: {mode}}}
{extra}"""


def allow_principals(name: str, namespace: str, principals: list[str]) -> str:
    values = ", ".join(f'"{p}"' for p in principals)
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  action: ALLOW
  rules:
  - from: [{{source: {{principals: [{values}]}}}}]
"""


def destination_rule(name: str, namespace: str, host: str, tls: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  host: {host}
  trafficPolicy:
    tls: {tls}
"""


def sidecar_dir(directory: Path, *docs: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(docs):
        (directory / f"{i:02d}.yaml").write_text(doc)
    return directory


@dataclass
class Sidecar:
    process: GatewayProcess
    inbound: int
    outbound: int

    def stop(self) -> None:
        self.process.stop()


def start_sidecar(config: Path, svid: Svid | list[str], app_port: int, *,
                  workers: int = 1) -> Sidecar:  # fmt: skip
    """``isthmus gateway run --role sidecar`` on fresh inbound/outbound ports; ``svid`` is a
    static identity, or the identity flags as given."""
    inbound, outbound = free_port(), free_port()
    identity = svid.args() if isinstance(svid, Svid) else svid
    args = ["--role", "sidecar", "--inbound-port", str(inbound), "--inbound-address",
            "127.0.0.1", "--app-port", str(app_port), "--outbound-port", str(outbound),
            *identity]  # fmt: skip
    process = GatewayProcess(config, workers=workers, extra_args=args).start()
    return Sidecar(process, inbound, outbound)


def rejections(process: GatewayProcess, reason_prefix: str) -> float:
    """The sum of ``isthmus_downstream_rejections_total`` whose reason starts with the prefix."""
    total = 0.0
    for line in process.metrics().splitlines():
        if line.startswith('isthmus_downstream_rejections_total{reason="' + reason_prefix):
            total += float(line.rsplit(" ", 1)[1])
    return total
