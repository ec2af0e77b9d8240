"""The X.509-SVID rules (identity.md, "X.509-SVID rules"), as checks on one certificate.

The CA (:mod:`pki.authority`) runs them on what it has just issued, and the verifier
(:mod:`pki.verify`) runs them on what a peer presents, so issuing and enforcing cannot drift
apart. Path validation (signatures, validity, pathLen) is not here; see :mod:`pki.verify`.

Leaf: exactly one URI SAN, the SPIFFE ID (DNS SANs allowed besides); basicConstraints cA=false;
keyUsage present and critical with digitalSignature and never keyCertSign or cRLSign;
extendedKeyUsage, when present, with both serverAuth and clientAuth; with an empty subject the
SAN extension is critical. Signing certificate: cA=true with keyCertSign; its SPIFFE ID, if any,
has no path.
"""

from __future__ import annotations

from typing import TypeVar

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from pki.errors import SigningCertRuleError, SpiffeIdError, SvidRuleError
from pki.spiffe import SpiffeId, parse_spiffe_id

_E = TypeVar("_E", bound=x509.ExtensionType)


def check_leaf(cert: x509.Certificate) -> SpiffeId:
    """Apply the leaf rules to ``cert``; return its SPIFFE ID or raise :class:`SvidRuleError`."""
    basic = _extension(cert, x509.BasicConstraints)
    if basic is not None and basic.value.ca:
        raise SvidRuleError(
            "leaf: basicConstraints has cA=true: a CA certificate cannot be an X.509-SVID leaf",
            rule="leaf-ca",
        )
    spiffe_id = _leaf_spiffe_id(cert)
    usage = _extension(cert, x509.KeyUsage)
    if usage is None:
        raise SvidRuleError("leaf: the keyUsage extension is missing", rule="leaf-key-usage")
    if not usage.critical:
        raise SvidRuleError("leaf: keyUsage must be critical", rule="leaf-key-usage-critical")
    if usage.value.key_cert_sign:
        raise SvidRuleError("leaf: keyUsage must not have keyCertSign", rule="leaf-key-cert-sign")
    if usage.value.crl_sign:
        raise SvidRuleError("leaf: keyUsage must not have cRLSign", rule="leaf-crl-sign")
    if not usage.value.digital_signature:
        raise SvidRuleError(
            "leaf: keyUsage must have digitalSignature", rule="leaf-digital-signature"
        )
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if eku is not None:
        missing = [
            name
            for name, oid in (
                ("serverAuth", ExtendedKeyUsageOID.SERVER_AUTH),
                ("clientAuth", ExtendedKeyUsageOID.CLIENT_AUTH),
            )
            if oid not in eku.value
        ]
        if missing:
            raise SvidRuleError(
                f"leaf: extendedKeyUsage lacks {' and '.join(missing)}", rule="leaf-eku"
            )
    return spiffe_id


def check_signing_cert(cert: x509.Certificate) -> SpiffeId | None:
    """Apply the signing-certificate rules; return its SPIFFE ID (trust domain only) if any."""
    label = f"CA certificate {cert.subject.rfc4514_string() or '(empty subject)'}"
    basic = _extension(cert, x509.BasicConstraints)
    if basic is None or not basic.value.ca:
        raise SigningCertRuleError(
            f"{label}: basicConstraints cA=true is missing", rule="signing-not-ca"
        )
    usage = _extension(cert, x509.KeyUsage)
    if usage is None or not usage.value.key_cert_sign:
        raise SigningCertRuleError(
            f"{label}: keyUsage must have keyCertSign", rule="signing-key-cert-sign"
        )
    found: SpiffeId | None = None
    for uri in _uris(cert):
        if not uri.lower().startswith("spiffe:"):
            continue
        try:
            spiffe_id = parse_spiffe_id(uri)
        except SpiffeIdError as exc:
            raise SigningCertRuleError(f"{label}: {exc}", rule="signing-spiffe-id") from exc
        if spiffe_id.path:
            raise SigningCertRuleError(
                f"{label}: its SPIFFE ID {spiffe_id} must have no path", rule="signing-id-path"
            )
        found = spiffe_id
    return found


def spiffe_id_of(cert: x509.Certificate) -> SpiffeId | None:
    """The SPIFFE ID of ``cert`` if it has exactly one URI SAN that is a valid SPIFFE ID."""
    uris = _uris(cert)
    if len(uris) != 1:
        return None
    try:
        return parse_spiffe_id(uris[0])
    except SpiffeIdError:
        return None


def _leaf_spiffe_id(cert: x509.Certificate) -> SpiffeId:
    san = _extension(cert, x509.SubjectAlternativeName)
    uris = [] if san is None else san.value.get_values_for_type(x509.UniformResourceIdentifier)
    if not uris:
        raise SvidRuleError(
            "leaf: no URI SAN: an X.509-SVID carries its SPIFFE ID there", rule="leaf-no-uri-san"
        )
    if len(uris) > 1:
        raise SvidRuleError(
            f"leaf: {len(uris)} URI SANs: an X.509-SVID has exactly one", rule="leaf-uri-sans"
        )
    try:
        spiffe_id = parse_spiffe_id(uris[0])
    except SpiffeIdError as exc:
        raise SvidRuleError(f"leaf: URI SAN: {exc}", rule="leaf-spiffe-id") from exc
    if not spiffe_id.path:
        raise SvidRuleError(
            f"leaf: SPIFFE ID {spiffe_id} has no path: that names a trust domain, not a workload",
            rule="leaf-id-path",
        )
    if len(cert.subject) == 0 and san is not None and not san.critical:
        raise SvidRuleError(
            "leaf: the subject is empty, so the SAN extension must be critical",
            rule="leaf-san-critical",
        )
    return spiffe_id


def _uris(cert: x509.Certificate) -> list[str]:
    san = _extension(cert, x509.SubjectAlternativeName)
    return [] if san is None else san.value.get_values_for_type(x509.UniformResourceIdentifier)


def _extension(cert: x509.Certificate, kind: type[_E]) -> x509.Extension[_E] | None:
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None
