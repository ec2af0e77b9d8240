"""The X.509-SVID verifier: path validation to a trust bundle, then the SVID rules.

Called by the proxy's mTLS layer on the certificate chain a peer presents (parsed from the
handshake with ``cryptography``; ``ssl`` does not read URI SANs), by the CA service and by tests.
Pure: the caller passes the certificates and, in tests, the time.

Order of checks, so that the error names the first rule broken:

1. the leaf rules of :func:`pki.svid.check_leaf` (one URI SAN that is a SPIFFE ID, cA=false,
   keyUsage, extendedKeyUsage) - a CA certificate presented as a leaf is refused here;
2. the expected trust domain, when the caller gives one;
3. the leaf's validity window;
4. RFC 5280 path validation to a root of the bundle, by ``cryptography.x509.verification``
   (signatures, validity of every certificate, basicConstraints and pathLen, name constraints,
   unknown critical extensions). Its CA profile is the Web PKI one, which is RFC 5280 plus
   stricter encoding rules our CA follows. For the leaf, its profile is replaced by "anything
   known" (``permit_all``): the SVID rules of step 1 are the leaf profile, and the Web PKI leaf
   profile would add demands (AKI, a SAN for the host name) that X.509-SVIDs do not make;
5. the signing-certificate rules of :func:`pki.svid.check_signing_cert` on every CA of the path
   that was built, the root included.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509 import verification

from pki.bundle import TrustBundle
from pki.errors import ChainError, TrustDomainError, ValidityError
from pki.spiffe import SpiffeId, parse_trust_domain
from pki.svid import check_leaf, check_signing_cert

# A leaf, an intermediate and the root is the usual depth; room for one more level.
MAX_CHAIN_DEPTH = 4


@dataclass(frozen=True, slots=True)
class VerifiedSvid:
    """What a successful verification yields: the peer's ID and the path that was built."""

    spiffe_id: SpiffeId
    chain: tuple[x509.Certificate, ...]  # leaf first, trust anchor last


class SvidVerifier:
    """Verifies X.509-SVIDs against one trust bundle (which may carry several roots).

    ``trust_domain``, when given, is the only trust domain accepted. Build a new verifier when
    the bundle changes; one verifier may be used from many threads.
    """

    def __init__(self, bundle: TrustBundle, *, trust_domain: str | None = None) -> None:
        self.bundle = bundle
        self.trust_domain = None if trust_domain is None else parse_trust_domain(trust_domain)
        self._store = verification.Store(list(bundle.roots)) if bundle.roots else None

    def verify(
        self,
        chain: Sequence[x509.Certificate],
        *,
        now: datetime.datetime | None = None,
    ) -> VerifiedSvid:
        """Verify ``chain`` (leaf first, then any intermediates the peer sent).

        Returns the SPIFFE ID and the validated path, or raises a
        :class:`~pki.errors.VerificationError` subclass whose ``rule`` names the rule broken.
        """
        if not chain:
            raise ChainError("no certificate presented", rule="no-certificate")
        leaf, intermediates = chain[0], list(chain[1:])
        spiffe_id = check_leaf(leaf)
        if self.trust_domain is not None and not spiffe_id.member_of(self.trust_domain):
            raise TrustDomainError(
                f"{spiffe_id} is not in trust domain {self.trust_domain}", rule="trust-domain"
            )
        now = now or datetime.datetime.now(datetime.UTC)
        _check_window(leaf, "leaf", now)
        if self._store is None:
            raise ChainError(
                "the trust bundle is empty: the trust domain is revoked", rule="bundle-empty"
            )
        verifier = (
            verification.PolicyBuilder()
            .store(self._store)
            .time(now)
            .max_chain_depth(MAX_CHAIN_DEPTH)
            .extension_policies(
                ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=verification.ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(leaf, intermediates)
        except verification.VerificationError as exc:
            # Say "expired" rather than "no path" when a certificate that could be on the
            # path is out of its window.
            issuers = {cert.issuer for cert in chain}
            for cert in (*intermediates, *self.bundle.roots):
                if cert.subject in issuers:
                    _check_window(cert, _describe(cert), now)
            raise ChainError(
                f"no valid path from {spiffe_id} to a root of the trust bundle: {exc}",
                rule="chain",
            ) from exc
        path = tuple(verified.chain)
        for ca in path[1:]:
            check_signing_cert(ca)
        return VerifiedSvid(spiffe_id, path)


def verify_svid(
    chain: Sequence[x509.Certificate],
    bundle: TrustBundle,
    *,
    trust_domain: str | None = None,
    now: datetime.datetime | None = None,
) -> SpiffeId:
    """One-shot :meth:`SvidVerifier.verify`; returns only the SPIFFE ID."""
    return SvidVerifier(bundle, trust_domain=trust_domain).verify(chain, now=now).spiffe_id


def _check_window(cert: x509.Certificate, label: str, now: datetime.datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise ValidityError(
            f"{label}: not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S}Z",
            rule="not-yet-valid",
        )
    if now > cert.not_valid_after_utc:
        raise ValidityError(
            f"{label}: expired at {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z", rule="expired"
        )


def _describe(cert: x509.Certificate) -> str:
    return f"CA certificate {cert.subject.rfc4514_string() or '(empty subject)'}"
