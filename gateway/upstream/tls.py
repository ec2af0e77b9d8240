"""TLS and mTLS origination towards a cluster's endpoints (snapshot ``Cluster.tls``).

The engine builds one :class:`ClusterTls` per cluster that has ``tls`` (with
:func:`build_cluster_tls`, before it commits a snapshot, so a bad certificate refuses the
snapshot) and the cluster manager gives it to every endpoint pool; the pool's ``_connect``
wraps each new connection with :meth:`ClusterTls.context` and
:attr:`ClusterTls.server_hostname`, then calls :meth:`ClusterTls.check`. A refused server is
a connect failure (503, flag ``UF``) whose reason says what was wrong.

Modes (Istio ``ClientTLSSettings``):

- ``ISTIO_MUTUAL``: present the proxy's own SVID; verify the server's chain to the proxy's
  trust bundle (by ``ssl``), then the X.509-SVID leaf rules, then that the server's SPIFFE ID
  is one of ``subject_alt_names`` (the identities the destination may have; an entry ending
  in ``*`` matches as a prefix, Istio's ``spiffe://<domain>/ns/<ns>/*``), or, when the
  list is empty, that it is in our trust domain. The context comes from the identity at each
  connect, so renewed credentials are used by new connections only.
- ``SIMPLE``: verify the server against ``ca_pem`` (or the system roots); with
  ``subject_alt_names`` one of them must be a DNS or URI SAN of the server's certificate,
  otherwise, with ``sni``, the usual host-name check against it.
- ``MUTUAL``: ``SIMPLE`` plus the client certificate ``client_cert_pem``/``client_key_pem``.

**Protocol.** The cluster's protocol decides, never ALPN: the client offers only that protocol
(``h2`` for an HTTP/2 cluster, ``http/1.1`` otherwise, kept only if ``alpn`` lists it). A
server that selects another protocol is refused; one that selects none is spoken to in the
cluster's protocol. Between proxies the control plane (or the sidecar compile step) makes the
mesh clusters HTTP/2, hence ALPN ``h2``.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any, Protocol

from cryptography import x509

from gateway.config.snapshot import UpstreamTls
from gateway.upstream.errors import ConnectFailure
from pki.errors import PkiError
from pki.keys import private_key_from_pem
from pki.pem import load_certificates
from pki.spiffe import SpiffeId, parse_spiffe_id
from pki.tls_context import load_cert_chain

H2 = "h2"
HTTP1 = "http/1.1"


class MeshIdentity(Protocol):
    """The proxy's workload identity, as the upstream side needs it
    (``gateway.transport.mtls_identity.WorkloadIdentity``)."""

    @property
    def trust_domain(self) -> str: ...

    def client_context(self, alpn: Sequence[str]) -> ssl.SSLContext: ...

    def peer_id(self, ssl_object: ssl.SSLObject | None) -> SpiffeId: ...


class ClusterTls:
    """How connections to one cluster are wrapped and whom they must reach."""

    __slots__ = ("_sans", "_static", "alpn", "config", "identity", "protocol", "server_hostname")

    def __init__(
        self,
        config: UpstreamTls,
        protocol: str,
        identity: MeshIdentity | None,
        static: ssl.SSLContext | None,
    ) -> None:
        self.config = config
        self.protocol = protocol
        self.identity = identity
        self._static = static
        self.alpn = offered_alpn(config, protocol)
        # "" disables SNI (asyncio then also skips host-name checks, which are off anyway).
        self.server_hostname = config.sni or ""
        self._sans = frozenset(_normal_san(s) for s in config.subject_alt_names)

    def context(self) -> ssl.SSLContext:
        """The client context for a connection made now."""
        static = self._static
        if static is not None:
            return static
        identity = self.identity
        if identity is None:
            raise ConnectFailure("ISTIO_MUTUAL needs the proxy's identity, and it has none")
        return identity.client_context(self.alpn)

    def check(self, ssl_object: Any) -> str | None:
        """What is wrong with the server of a finished handshake, or None."""
        if ssl_object is None:
            return "the connection is not TLS"
        selected = ssl_object.selected_alpn_protocol()
        wanted = H2 if self.protocol == "h2c" else HTTP1
        if selected is not None and selected != wanted:
            return f"the server chose ALPN {selected}, the cluster speaks {wanted}"
        if self.config.mode == "ISTIO_MUTUAL":
            return self._check_mesh_peer(ssl_object)
        if self._sans:
            return self._check_sans(ssl_object)
        return None

    def failure(self, key: str, exc: OSError) -> ConnectFailure:
        """The connect failure for a handshake that failed (an ``ssl`` error)."""
        if isinstance(exc, ssl.SSLError):
            detail = exc.reason or str(exc)
            if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
                detail = f"{detail}: {exc.verify_message}"
            return ConnectFailure(f"TLS handshake with {key} failed: {detail}")
        return ConnectFailure(f"connect to {key} failed: {exc.strerror or exc}")

    def _check_mesh_peer(self, ssl_object: ssl.SSLObject) -> str | None:
        assert self.identity is not None
        try:
            peer = self.identity.peer_id(ssl_object)
        except PkiError as exc:
            return f"the server's certificate is not a valid SVID: {exc}"
        sans = self._sans
        if sans:
            if peer.uri not in sans and not _prefix_match(peer.uri, sans):
                return (
                    f"the server's identity {peer} is not one of "
                    f"{', '.join(sorted(sans))} (subject_alt_names)"
                )
        elif not peer.member_of(self.identity.trust_domain):
            domain = self.identity.trust_domain
            return f"the server's identity {peer} is not in trust domain {domain}"
        return None

    def _check_sans(self, ssl_object: ssl.SSLObject) -> str | None:
        der = ssl_object.getpeercert(binary_form=True)
        if not der:
            return "the server presented no certificate"
        cert = x509.load_der_x509_certificate(der)
        try:
            ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            names: list[str] = []
        else:
            names = ext.get_values_for_type(x509.DNSName) + ext.get_values_for_type(
                x509.UniformResourceIdentifier
            )
        if not self._sans.intersection(_normal_san(n) for n in names):
            return (
                f"none of the server's names ({', '.join(names) or 'none'}) is one of "
                f"{', '.join(sorted(self._sans))} (subject_alt_names)"
            )
        return None

    def __repr__(self) -> str:
        sans = f" sans={len(self._sans)}" if self._sans else ""
        return f"<ClusterTls {self.config.mode} alpn={','.join(self.alpn) or '-'}{sans}>"


def offered_alpn(config: UpstreamTls, protocol: str) -> tuple[str, ...]:
    """The ALPN list a connection offers: the cluster's protocol, if ``config.alpn`` has it."""
    wanted = H2 if protocol == "h2c" else HTTP1
    return (wanted,) if wanted in config.alpn else ()


def endpoint_tls_key(cluster: str, address: str, port: int) -> str:
    """Where an endpoint's own TLS settings (``Endpoint.tls``) sit in the map of
    :class:`ClusterTls` that the cluster manager gets."""
    return f"{cluster}|{address}:{port}"


def build_cluster_tls(
    config: UpstreamTls, protocol: str, identity: MeshIdentity | None
) -> ClusterTls:
    """The :class:`ClusterTls` of a cluster. Raises ``ValueError`` with a readable message
    for unusable material (bad PEM, a key that does not fit, ISTIO_MUTUAL without an
    identity)."""
    if config.mode == "ISTIO_MUTUAL":
        if identity is None:
            raise ValueError(
                "tls mode ISTIO_MUTUAL needs the proxy's own identity: start it with "
                "--cert/--key/--bundle or --ca-url"
            )
        return ClusterTls(config, protocol, identity, None)
    return ClusterTls(config, protocol, identity, _static_context(config, protocol))


def _static_context(config: UpstreamTls, protocol: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if config.ca_pem:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=config.ca_pem)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    except ssl.SSLError as exc:
        raise ValueError(f"tls.caCertificates: not usable PEM certificates ({exc})") from exc
    # With subject_alt_names the names are checked after the handshake; without them and
    # with an SNI, the usual host-name check runs against the SNI.
    ctx.check_hostname = bool(config.sni) and not config.subject_alt_names
    alpn = offered_alpn(config, protocol)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if config.mode == "MUTUAL":
        if not config.client_cert_pem or not config.client_key_pem:
            raise ValueError("tls mode MUTUAL needs a client certificate and its key")
        try:
            chain = load_certificates(config.client_cert_pem.encode(), source="client certificate")
            key = private_key_from_pem(config.client_key_pem.encode())
            load_cert_chain(ctx, chain, key)
        except (PkiError, ValueError, ssl.SSLError) as exc:
            raise ValueError(f"tls client certificate: {exc}") from exc
    return ctx


def _normal_san(name: str) -> str:
    """SPIFFE IDs compare with their scheme and trust domain lower-cased; others as given."""
    if name.lower().startswith("spiffe://"):
        try:
            return parse_spiffe_id(name).uri
        except PkiError:
            return name
    return name


def _prefix_match(uri: str, sans: frozenset[str]) -> bool:
    """Whether ``uri`` matches a ``subject_alt_names`` entry ending in ``*``: Istio's prefix
    form (``spiffe://<domain>/ns/<ns>/*``: any identity of the namespace), which the
    federation controller uses for services of other clusters, whose service accounts are
    not published. A SPIFFE ID never contains ``*``, so the form is unambiguous."""
    return any(s.endswith("*") and uri.startswith(s[:-1]) for s in sans)
