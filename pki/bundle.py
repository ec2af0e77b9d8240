"""Trust bundles: the set of root certificates a verifier accepts, and their file formats.

Called by :mod:`pki.verify` (the anchors of path validation), :mod:`pki.rotation` (a bundle
holds the old and the new root while a rotation is in progress), the ``isthmus pki`` commands,
the CA service (which answers with the bundle) and the credential manager (which follows it).

Two encodings: concatenated PEM (``root-cert.pem`` in Istio's ``cacerts``, ``bundle.pem``) and
the SPIFFE bundle JWK set (identity.md, "Trust bundles"). Roots are kept in order and without
duplicates (same DER). Every root must be a signing certificate (cA=true, keyCertSign). Pure
apart from :func:`read_bundle` and :func:`write_bundle`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pki.errors import BundleError, PemError, PkiError
from pki.files import write_file
from pki.pem import certificates_to_pem, fingerprint, load_certificates
from pki.svid import check_signing_cert

X509_SVID_USE = "x509-svid"


@dataclass(frozen=True, slots=True)
class TrustBundle:
    """An ordered set of trust anchors. Empty means revoked: nothing verifies against it."""

    roots: tuple[x509.Certificate, ...]

    @classmethod
    def of(cls, certs: Iterable[x509.Certificate]) -> TrustBundle:
        """A bundle of ``certs`` in order, duplicates dropped; each must be a signing cert."""
        seen: set[str] = set()
        roots: list[x509.Certificate] = []
        for cert in certs:
            key = fingerprint(cert)
            if key in seen:
                continue
            try:
                check_signing_cert(cert)
            except PkiError as exc:
                raise BundleError(f"trust bundle: {exc}", rule="bundle-not-ca") from exc
            seen.add(key)
            roots.append(cert)
        return cls(tuple(roots))

    @classmethod
    def from_pem(cls, data: bytes, *, source: str = "trust bundle") -> TrustBundle:
        try:
            return cls.of(load_certificates(data, source=source))
        except PemError as exc:
            raise BundleError(str(exc), rule="bundle-pem") from exc

    def to_pem(self) -> bytes:
        return certificates_to_pem(self.roots)

    def merge(self, *others: TrustBundle) -> TrustBundle:
        """This bundle's roots, then the others' that are not in it yet."""
        return TrustBundle.of([*self.roots, *(cert for other in others for cert in other.roots)])

    def without(self, *certs: x509.Certificate) -> TrustBundle:
        drop = {fingerprint(cert) for cert in certs}
        return TrustBundle(tuple(cert for cert in self.roots if fingerprint(cert) not in drop))

    def __contains__(self, cert: object) -> bool:
        if not isinstance(cert, x509.Certificate):
            return False
        key = fingerprint(cert)
        return any(fingerprint(root) == key for root in self.roots)

    def __len__(self) -> int:
        return len(self.roots)

    def fingerprints(self) -> list[str]:
        return [fingerprint(cert) for cert in self.roots]

    def to_spiffe_json(self, *, sequence: int = 0, refresh_hint_s: int | None = None) -> str:
        """The SPIFFE bundle JWK set: one ``x509-svid`` key per root, no ``kid``."""
        document: dict[str, Any] = {"spiffe_sequence": sequence}
        if refresh_hint_s is not None:
            document["spiffe_refresh_hint"] = refresh_hint_s
        document["keys"] = [_jwk(cert) for cert in self.roots]
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_spiffe_json(cls, text: str | bytes) -> TrustBundle:
        """Read a SPIFFE bundle; keys whose ``use`` is not ``x509-svid`` are skipped."""
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise BundleError(f"SPIFFE bundle: not JSON ({exc})", rule="bundle-json") from exc
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise BundleError("SPIFFE bundle: a 'keys' list is required", rule="bundle-json")
        certs: list[x509.Certificate] = []
        for index, key in enumerate(document["keys"]):
            where = f"SPIFFE bundle: keys[{index}]"
            if not isinstance(key, dict):
                raise BundleError(f"{where}: not an object", rule="bundle-json")
            if key.get("use") != X509_SVID_USE:
                continue
            if "kid" in key:
                raise BundleError(f"{where}: x509-svid keys have no 'kid'", rule="bundle-kid")
            x5c = key.get("x5c")
            if not isinstance(x5c, list) or len(x5c) != 1 or not isinstance(x5c[0], str):
                raise BundleError(
                    f"{where}: 'x5c' must hold exactly one certificate", rule="bundle-x5c"
                )
            try:
                cert = x509.load_der_x509_certificate(base64.b64decode(x5c[0], validate=True))
            except (ValueError, binascii.Error) as exc:
                raise BundleError(f"{where}: bad certificate ({exc})", rule="bundle-x5c") from exc
            if key.get("kty") != _kty(cert):
                raise BundleError(
                    f"{where}: 'kty' does not match the certificate's key", rule="bundle-kty"
                )
            certs.append(cert)
        return cls.of(certs)


def read_bundle(path: Path) -> TrustBundle:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror}", rule="unreadable") from exc
    return TrustBundle.from_pem(data, source=str(path))


def write_bundle(path: Path, bundle: TrustBundle) -> None:
    write_file(path, bundle.to_pem())


def _jwk(cert: x509.Certificate) -> dict[str, Any]:
    public_key = cert.public_key()
    jwk: dict[str, Any] = {"kty": _kty(cert), "use": X509_SVID_USE}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        numbers = public_key.public_numbers()
        size = (public_key.curve.key_size + 7) // 8
        jwk["crv"] = {"secp256r1": "P-256", "secp384r1": "P-384"}.get(public_key.curve.name)
        jwk["x"] = _b64url(numbers.x.to_bytes(size, "big"))
        jwk["y"] = _b64url(numbers.y.to_bytes(size, "big"))
    elif isinstance(public_key, rsa.RSAPublicKey):
        rsa_numbers = public_key.public_numbers()
        jwk["n"] = _b64url(rsa_numbers.n.to_bytes((rsa_numbers.n.bit_length() + 7) // 8, "big"))
        jwk["e"] = _b64url(rsa_numbers.e.to_bytes((rsa_numbers.e.bit_length() + 7) // 8, "big"))
    jwk["x5c"] = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    return jwk


def _kty(cert: x509.Certificate) -> str:
    public_key = cert.public_key()
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "EC"
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA"
    raise BundleError(
        f"unsupported root key type {type(public_key).__name__}", rule="bundle-key-type"
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
