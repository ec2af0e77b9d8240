"""``v1 Secret`` of type ``kubernetes.io/tls``: a certificate chain and its private key.

The loader validates each Secret here: both PEMs must parse (with ``cryptography``) and the key
must belong to the first certificate, so that a bad Secret fails the load instead of the TLS
handshake. ``gateway.config.refs`` calls :func:`tls_pair` to put the PEMs into a snapshot
``CertificatePair``.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from gateway.config.kinds.meta import Object
from gateway.config.schema import FieldIssue, join

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import (
        CertificatePublicKeyTypes,
        PublicKeyTypes,
    )

TLS_TYPE = "kubernetes.io/tls"
CERT_KEY = "tls.crt"
KEY_KEY = "tls.key"


class Secret(Object, frozen=True, kw_only=True):
    kind_name = "Secret"
    api_versions = ("v1",)

    type: str = "Opaque"
    data: dict[str, str] = {}
    string_data: dict[str, str] = {}
    immutable: bool = False

    def check(self) -> list[FieldIssue]:
        if self.type != TLS_TYPE:
            return [("type", f'"{self.type}" is not supported by isthmus; use {TLS_TYPE}')]
        issues: list[FieldIssue] = []
        values: dict[str, bytes] = {}
        for key in (CERT_KEY, KEY_KEY):
            raw, issue = self.decoded(key)
            if issue is not None:
                issues.append(issue)
            elif raw is not None:
                values[key] = raw
        if issues:
            return issues
        return self._pem_issues(values[CERT_KEY], values[KEY_KEY])

    def decoded(self, key: str) -> tuple[bytes | None, FieldIssue | None]:
        """The bytes under ``key``, or the problem with them."""
        # As in Kubernetes, stringData wins over data for the same key.
        if key in self.string_data:
            return self.string_data[key].encode(), None
        if key not in self.data:
            return None, (join("data", key), "required in a kubernetes.io/tls Secret")
        try:
            return base64.b64decode(self.data[key], validate=True), None
        except (binascii.Error, ValueError):
            return None, (join("data", key), "is not valid base64")

    def _path(self, key: str) -> str:
        return join("stringData" if key in self.string_data else "data", key)

    def _pem_issues(self, cert_pem: bytes, key_pem: bytes) -> list[FieldIssue]:
        # Imported here: the x509 module costs ~40 ms to import, paid by every process that
        # loads configuration kinds (controllers, workers) even when no Secret is present.
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        try:
            chain = x509.load_pem_x509_certificates(cert_pem)
        except ValueError as exc:
            return [(self._path(CERT_KEY), f"is not a valid PEM certificate: {_reason(exc)}")]
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            return [(self._path(KEY_KEY), f"is not a valid PEM private key: {_reason(exc)}")]
        if _spki(chain[0].public_key()) != _spki(key.public_key()):
            return [(self._path(KEY_KEY), "the private key does not match the certificate")]
        return []


def tls_pair(secret: Secret) -> tuple[str, str]:
    """The (certificate chain, private key) PEMs of a Secret that passed :meth:`Secret.check`."""
    cert, _ = secret.decoded(CERT_KEY)
    key, _ = secret.decoded(KEY_KEY)
    assert cert is not None and key is not None
    return cert.decode(errors="replace"), key.decode(errors="replace")


def _spki(public_key: CertificatePublicKeyTypes | PublicKeyTypes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
