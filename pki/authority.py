"""A certificate authority: a CA certificate, its key and its chain; it issues and signs.

Called by the ``isthmus pki`` commands (root, intermediates, local workload certificates), by
:mod:`pki.rotation`, and by the CA service that signs CSRs. Pure: no files, no clock unless the
caller leaves ``now`` out.

What is issued (identity.md, "X.509-SVID rules", checked again by :mod:`pki.svid` after
signing):

- root: self-signed, basicConstraints cA=true pathLen=1 (critical), keyUsage keyCertSign and
  cRLSign (critical), URI SAN ``spiffe://<td>`` (a signing certificate's ID has no path);
- intermediate (one per cluster): cA=true pathLen=0, the same keyUsage, URI SAN ``spiffe://<td>``;
- workload leaf: empty subject, exactly one URI SAN (the SPIFFE ID) in a critical SAN extension,
  cA=false (critical), keyUsage digitalSignature, plus keyEncipherment for RSA keys (critical),
  extendedKeyUsage serverAuth and clientAuth.

Every certificate has a random positive 128-bit serial, SKI and AKI, and starts
:data:`BACKDATE` in the past so that a peer whose clock is a little behind accepts it. A
certificate never outlives its issuer: its end is cut to the issuer's.

No name constraints are set: identity.md does not ask for them, the trust domain is already
bound by the URI SAN of every signing certificate, and URI name constraints are handled
unevenly by TLS stacks (a peer that does not know them must reject the critical extension).
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pki.csr import requested_spiffe_id
from pki.errors import IssuanceError, PkiError
from pki.keys import PrivateKey, PublicKey, check_public_key
from pki.spiffe import SpiffeId, trust_domain_id
from pki.svid import check_leaf, check_signing_cert

BACKDATE = datetime.timedelta(minutes=5)
DEFAULT_ROOT_TTL = datetime.timedelta(days=3650)
DEFAULT_INTERMEDIATE_TTL = datetime.timedelta(days=365)
DEFAULT_LEAF_TTL = datetime.timedelta(hours=24)
MAX_LEAF_TTL = datetime.timedelta(days=30)

_ORGANIZATION = "Isthmus"
_CLUSTER_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_SERIAL_BITS = 128


@dataclass(frozen=True, slots=True)
class Authority:
    """A CA that can sign: ``cert`` with its ``key``, and ``chain``, its issuers up to the root.

    ``chain`` is empty for a root. Build one with :func:`create_root`, :meth:`issue_intermediate`
    or :meth:`load`, which checks that the parts fit together.
    """

    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...]
    trust_domain: str

    @classmethod
    def load(
        cls, cert: x509.Certificate, key: PrivateKey, chain: tuple[x509.Certificate, ...] = ()
    ) -> Authority:
        """Check and assemble a CA from its parts (read from files by the caller).

        Raises :class:`IssuanceError` when the key does not match, the certificate is not a
        signing certificate with a ``spiffe://<td>`` URI SAN, or a chain link is broken.
        """
        if cert.public_key() != key.public_key():
            raise IssuanceError("the CA key does not match the CA certificate", rule="ca-key")
        try:
            spiffe_id = check_signing_cert(cert)
        except PkiError as exc:
            raise IssuanceError(str(exc), rule=exc.rule) from exc
        if spiffe_id is None:
            raise IssuanceError(
                "the CA certificate has no spiffe://<trust-domain> URI SAN", rule="ca-trust-domain"
            )
        child = cert
        for parent in chain:
            try:
                child.verify_directly_issued_by(parent)
            except (ValueError, TypeError, InvalidSignature) as exc:
                raise IssuanceError(
                    f"CA chain: {child.subject.rfc4514_string()} is not signed by "
                    f"{parent.subject.rfc4514_string()}",
                    rule="ca-chain",
                ) from exc
            child = parent
        return cls(cert, key, tuple(chain), spiffe_id.trust_domain)

    @property
    def is_root(self) -> bool:
        return not self.chain

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1] if self.chain else self.cert

    @property
    def full_chain(self) -> tuple[x509.Certificate, ...]:
        """This CA's certificate followed by its issuers: what follows a leaf on the wire."""
        return (self.cert, *self.chain)

    def issue_intermediate(
        self,
        public_key: PublicKey,
        cluster: str,
        *,
        ttl: datetime.timedelta = DEFAULT_INTERMEDIATE_TTL,
        now: datetime.datetime | None = None,
    ) -> x509.Certificate:
        """An intermediate CA certificate for ``cluster`` (a DNS label), pathLen 0."""
        if not _CLUSTER_NAME.fullmatch(cluster):
            raise IssuanceError(
                f"cluster {cluster!r}: use a DNS label (lowercase letters, digits, '-', "
                "at most 63 characters)",
                rule="cluster-name",
            )
        if not self.is_root:
            raise IssuanceError("intermediates are issued by the root only", rule="ca-depth")
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Intermediate CA"),
                x509.NameAttribute(NameOID.COMMON_NAME, cluster),
            ]
        )
        cert = self._sign_ca(subject, _checked(public_key), path_length=0, ttl=ttl, now=now)
        check_signing_cert(cert)
        return cert

    def sign_leaf(
        self,
        public_key: PublicKey,
        spiffe_id: SpiffeId,
        *,
        ttl: datetime.timedelta = DEFAULT_LEAF_TTL,
        max_ttl: datetime.timedelta = MAX_LEAF_TTL,
        dns_names: tuple[str, ...] = (),
        ip_addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = (),
        now: datetime.datetime | None = None,
    ) -> x509.Certificate:
        """An X.509-SVID for ``spiffe_id`` and ``public_key``, valid for ``ttl`` (<= max_ttl).

        ``dns_names`` and ``ip_addresses`` add SANs besides the SPIFFE ID (the CA service's own
        server certificate needs them for hostname verification; workload CSRs never get them).
        """
        if not spiffe_id.member_of(self.trust_domain):
            raise IssuanceError(
                f"{spiffe_id} is not in this CA's trust domain {self.trust_domain}",
                rule="foreign-trust-domain",
            )
        if not spiffe_id.path:
            raise IssuanceError(
                f"{spiffe_id} names a trust domain, not a workload", rule="leaf-id-path"
            )
        if ttl > max_ttl:
            raise IssuanceError(
                f"lifetime {format_duration(ttl)} is above the maximum {format_duration(max_ttl)}",
                rule="ttl-too-long",
            )
        public_key = _checked(public_key)
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id.uri)]
        for dns in dns_names:
            if not dns or not dns.isascii():
                raise IssuanceError(
                    f"DNS name {dns!r}: use ASCII (the IDNA A-label)", rule="dns-name"
                )
            names.append(x509.DNSName(dns.lower()))
        names.extend(x509.IPAddress(ip) for ip in ip_addresses)
        encipherment = isinstance(public_key, rsa.RSAPublicKey)
        start, end = self._window(ttl, now)
        cert = (
            self._builder(x509.Name([]), public_key, start, end)
            .add_extension(x509.SubjectAlternativeName(names), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                _key_usage(digital_signature=True, key_encipherment=encipherment), critical=True
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        check_leaf(cert)
        return cert

    def sign_csr(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        ttl: datetime.timedelta = DEFAULT_LEAF_TTL,
        max_ttl: datetime.timedelta = MAX_LEAF_TTL,
        now: datetime.datetime | None = None,
    ) -> tuple[x509.Certificate, SpiffeId]:
        """Check ``csr`` (signature, key, one well-formed SPIFFE ID) and sign it.

        Authorizing the requested ID (does the caller's token prove it?) is the caller's job:
        compare the returned ID, or call :func:`pki.csr.requested_spiffe_id` first.
        """
        spiffe_id, public_key = requested_spiffe_id(csr)
        cert = self.sign_leaf(public_key, spiffe_id, ttl=ttl, max_ttl=max_ttl, now=now)
        return cert, spiffe_id

    def _sign_ca(
        self,
        subject: x509.Name,
        public_key: PublicKey,
        *,
        path_length: int,
        ttl: datetime.timedelta,
        now: datetime.datetime | None,
    ) -> x509.Certificate:
        start, end = self._window(ttl, now)
        builder = self._builder(subject, public_key, start, end)
        return _ca_extensions(builder, self.trust_domain, path_length).sign(
            self.key, hashes.SHA256()
        )

    def _builder(
        self,
        subject: x509.Name,
        public_key: PublicKey,
        start: datetime.datetime,
        end: datetime.datetime,
    ) -> x509.CertificateBuilder:
        issuer_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(new_serial())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski.value),
                critical=False,
            )
        )

    def _window(
        self, ttl: datetime.timedelta, now: datetime.datetime | None
    ) -> tuple[datetime.datetime, datetime.datetime]:
        if ttl <= datetime.timedelta(0):
            raise IssuanceError(f"lifetime must be positive, got {ttl}", rule="ttl")
        now = now or datetime.datetime.now(datetime.UTC)
        issuer_end = self.cert.not_valid_after_utc
        end = min(now + ttl, issuer_end)
        if end <= now:
            raise IssuanceError(
                f"the CA certificate expired at {issuer_end:%Y-%m-%d %H:%M}Z", rule="ca-expired"
            )
        return max(now - BACKDATE, self.cert.not_valid_before_utc), end


def create_root(
    key: PrivateKey,
    trust_domain: str,
    *,
    common_name: str = "Isthmus root CA",
    ttl: datetime.timedelta = DEFAULT_ROOT_TTL,
    now: datetime.datetime | None = None,
) -> Authority:
    """A new self-signed root for ``trust_domain``, pathLen 1 (root, intermediate, leaf)."""
    td_id = trust_domain_id(trust_domain)
    if ttl <= datetime.timedelta(0):
        raise IssuanceError(f"lifetime must be positive, got {ttl}", rule="ttl")
    public_key = _checked(key.public_key())
    now = now or datetime.datetime.now(datetime.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(new_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + ttl)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    cert = _ca_extensions(builder, td_id.trust_domain, 1).sign(key, hashes.SHA256())
    return Authority.load(cert, key)


def format_duration(duration: datetime.timedelta) -> str:
    """``1d2h``, ``24h``, ``90s``: the form the commands accept."""
    seconds = int(duration.total_seconds())
    if seconds <= 0:
        return f"{seconds}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def new_serial() -> int:
    """A random positive serial number of 128 bits (RFC 5280 allows up to 20 octets)."""
    while True:
        serial = secrets.randbits(_SERIAL_BITS)
        if serial:
            return serial


def _ca_extensions(
    builder: x509.CertificateBuilder, trust_domain: str, path_length: int
) -> x509.CertificateBuilder:
    td_uri = x509.UniformResourceIdentifier(trust_domain_id(trust_domain).uri)
    return (
        builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=path_length), critical=True
        )
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectAlternativeName([td_uri]), critical=False)
    )


def _key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _checked(public_key: object) -> PublicKey:
    try:
        return check_public_key(public_key)
    except ValueError as exc:
        raise IssuanceError(str(exc), rule="key-type") from exc
