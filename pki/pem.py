"""PEM certificates in and out, with errors that say which input was wrong.

Called by every module that reads certificates from files or requests: :mod:`pki.bundle`,
:mod:`pki.cacerts`, :mod:`pki.rootdir`, the CA service and the credential manager. Pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pki.errors import PemError

_CERT_BEGIN = b"-----BEGIN CERTIFICATE-----"


def load_certificates(data: bytes, *, source: str = "PEM") -> list[x509.Certificate]:
    """Every certificate in ``data`` (in order); at least one, or :class:`PemError`."""
    if _CERT_BEGIN not in data:
        raise PemError(f"{source}: no PEM certificate found", rule="pem")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise PemError(f"{source}: malformed PEM certificate ({exc})", rule="pem") from exc
    return certs


def load_certificate(data: bytes, *, source: str = "PEM") -> x509.Certificate:
    """The single certificate in ``data``; more than one is an error."""
    certs = load_certificates(data, source=source)
    if len(certs) != 1:
        raise PemError(f"{source}: expected one certificate, found {len(certs)}", rule="pem")
    return certs[0]


def certificates_to_pem(certs: Iterable[x509.Certificate]) -> bytes:
    """The certificates as concatenated PEM blocks, in the order given."""
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, lowercase hex: the identity of a certificate in a bundle."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
