"""Certificate signing requests for X.509-SVIDs: making one, and reading one safely.

The credential manager calls :func:`make_csr` with the key it made locally; the CA service and
:mod:`pki.authority` call :func:`load_csr` and :func:`requested_spiffe_id` on what a client sent.
A CSR asks for exactly one thing, its SPIFFE ID, as the only name in a subjectAltName extension;
anything else (DNS names, IP addresses, a second URI) is refused, because a bearer token proves
an identity, not host names. The CSR's subject is ignored. Pure.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from pki.errors import CsrError, SpiffeIdError
from pki.keys import PrivateKey, PublicKey, check_public_key
from pki.spiffe import SpiffeId, parse_spiffe_id

_CSR_BEGIN = b"-----BEGIN CERTIFICATE REQUEST-----"


def make_csr(key: PrivateKey, spiffe_id: SpiffeId) -> x509.CertificateSigningRequest:
    """A CSR for ``spiffe_id``, signed with ``key``: empty subject, one critical URI SAN."""
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id.uri)])
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(san, critical=True)
        .sign(key, hashes.SHA256())
    )


def csr_to_pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Parse one PEM CSR; raise :class:`CsrError` (rule ``pem``) when it is not one."""
    if _CSR_BEGIN not in data:
        raise CsrError("CSR: no PEM certificate request found", rule="pem")
    try:
        return x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise CsrError(f"CSR: malformed PEM certificate request ({exc})", rule="pem") from exc


def requested_spiffe_id(csr: x509.CertificateSigningRequest) -> tuple[SpiffeId, PublicKey]:
    """Check the CSR's signature, key and requested name; return ``(spiffe_id, public_key)``."""
    if not csr.is_signature_valid:
        raise CsrError("CSR: the signature does not match its public key", rule="csr-signature")
    try:
        public_key = check_public_key(csr.public_key())
    except ValueError as exc:
        raise CsrError(f"CSR: {exc}", rule="csr-key-type") from exc
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CsrError(
            "CSR: no subjectAltName: the SPIFFE ID must be requested as a URI SAN",
            rule="csr-no-uri-san",
        ) from None
    except ValueError as exc:  # a duplicated or undecodable extension
        raise CsrError(f"CSR: unreadable extensions ({exc})", rule="csr-extensions") from exc
    names = list(san)
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise CsrError(
            f"CSR: {len(uris)} URI SANs: request exactly one, the SPIFFE ID", rule="csr-uri-sans"
        )
    if len(names) != 1:
        raise CsrError(
            "CSR: only the SPIFFE ID may be requested (no DNS, IP or other SANs)",
            rule="csr-extra-sans",
        )
    try:
        spiffe_id = parse_spiffe_id(uris[0])
    except SpiffeIdError as exc:
        raise CsrError(f"CSR: {exc}", rule="csr-spiffe-id") from exc
    if not spiffe_id.path:
        raise CsrError(
            f"CSR: {spiffe_id} names a trust domain, not a workload", rule="csr-spiffe-id"
        )
    return spiffe_id, public_key
