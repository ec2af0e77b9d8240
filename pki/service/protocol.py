"""The CA service's wire format: the signing request, the answer and the error body. Pure.

Called by :mod:`pki.service.app` (server side) and :mod:`pki.credentials` (client side), so the
two cannot drift apart. ``POST /v1/certificates`` with ``Authorization: Bearer <token>`` and::

    {"csr": "-----BEGIN CERTIFICATE REQUEST-----\\n...", "ttl": "24h"}

``ttl`` is optional: a duration (``90s``, ``15m``, ``24h``, ``1h30m``) or a whole number of
seconds. The answer (200)::

    {"spiffeId": "spiffe://td/ns/shop/sa/web", "serial": "<hex>",
     "notBefore": "2024-05-01T10:00:00Z", "notAfter": "2024-05-02T10:05:00Z",
     "certificate": "<leaf PEM>", "chain": "<leaf PEM, then the intermediates>",
     "trustBundle": "<PEM roots>", "spiffeBundle": {<SPIFFE bundle JWK set>}}

Every error is ``{"error": "<code>", "message": "<words>"}`` (and ``retryAfterSeconds`` on 429).
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from pki.bundle import TrustBundle
from pki.csr import load_csr
from pki.errors import PkiError
from pki.pem import certificates_to_pem, load_certificates
from pki.spiffe import SpiffeId, parse_spiffe_id

PATH = "/v1/certificates"
CONTENT_TYPE = "application/json"

_DURATION_PART = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_TTL_S = 10 * 365 * 86400  # anything longer is a typo, not a policy


class RequestError(PkiError, ValueError):
    """The body is not a valid signing request (400); ``rule`` is the error code."""


class AnswerError(PkiError, ValueError):
    """The CA service's answer is not what the protocol says (client side)."""


@dataclass(frozen=True, slots=True)
class SigningRequest:
    csr: x509.CertificateSigningRequest
    ttl: datetime.timedelta | None  # None: the service's default


@dataclass(frozen=True, slots=True)
class Issued:
    """A parsed answer: the chain (leaf first, then intermediates) and the trust bundle."""

    spiffe_id: SpiffeId
    chain: tuple[x509.Certificate, ...]
    bundle: TrustBundle

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


def parse_duration(value: str) -> datetime.timedelta:
    """``90s``, ``15m``, ``24h``, ``30d`` or a sum such as ``1h30m``; positive. ValueError."""
    text = value.strip().lower()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"expected a duration such as 24h, 30m or 90s, got {value!r}")
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"the duration must be positive, got {value!r}")
    return datetime.timedelta(seconds=seconds)


def parse_request(body: bytes) -> SigningRequest:
    """The request body to a :class:`SigningRequest`; :class:`RequestError` says what is wrong.

    The CSR is parsed here (PEM and DER), not checked: :func:`pki.csr.requested_spiffe_id`
    checks its signature and the name it asks for.
    """
    try:
        document: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"the body is not JSON ({exc})", rule="bad-json") from exc
    if not isinstance(document, dict):
        raise RequestError('the body must be a JSON object {"csr": ...}', rule="bad-json")
    unknown = sorted(set(document) - {"csr", "ttl"})
    if unknown:
        raise RequestError(f"unknown field {unknown[0]!r} (known: csr, ttl)", rule="bad-field")
    pem = document.get("csr")
    if not isinstance(pem, str) or not pem:
        raise RequestError('"csr" is required: a PEM certificate request', rule="bad-csr")
    try:
        csr = load_csr(pem.encode("utf-8"))
    except PkiError as exc:
        raise RequestError(f'"csr": {exc}', rule="bad-csr") from exc
    return SigningRequest(csr, _ttl(document.get("ttl")))


def _ttl(value: object) -> datetime.timedelta | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise RequestError('"ttl": a duration such as "24h", or seconds', rule="bad-ttl")
    if isinstance(value, int):
        if not 0 < value <= _MAX_TTL_S:
            raise RequestError(f'"ttl": {value} seconds is out of range', rule="bad-ttl")
        return datetime.timedelta(seconds=value)
    if isinstance(value, str):
        try:
            ttl = parse_duration(value)
        except ValueError as exc:
            raise RequestError(f'"ttl": {exc}', rule="bad-ttl") from exc
        if ttl.total_seconds() > _MAX_TTL_S:
            raise RequestError(f'"ttl": {value} is out of range', rule="bad-ttl")
        return ttl
    raise RequestError('"ttl": a duration such as "24h", or seconds', rule="bad-ttl")


def request_body(csr_pem: bytes, ttl: datetime.timedelta | None = None) -> bytes:
    """The body a client sends (the credential manager)."""
    document: dict[str, Any] = {"csr": csr_pem.decode("ascii")}
    if ttl is not None:
        document["ttl"] = int(ttl.total_seconds())
    return json.dumps(document).encode()


def answer(
    spiffe_id: SpiffeId,
    leaf: x509.Certificate,
    intermediates: tuple[x509.Certificate, ...],
    bundle: TrustBundle,
) -> dict[str, Any]:
    """The 200 document for an issued ``leaf``."""
    return {
        "spiffeId": str(spiffe_id),
        "serial": format(leaf.serial_number, "x"),
        "notBefore": rfc3339(leaf.not_valid_before_utc),
        "notAfter": rfc3339(leaf.not_valid_after_utc),
        "certificate": certificates_to_pem([leaf]).decode("ascii"),
        "chain": certificates_to_pem([leaf, *intermediates]).decode("ascii"),
        "trustBundle": bundle.to_pem().decode("ascii"),
        "spiffeBundle": json.loads(bundle.to_spiffe_json()),
    }


def parse_answer(body: bytes) -> Issued:
    """A 200 document back to certificates (client side); :class:`AnswerError` if malformed."""
    try:
        document: Any = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        chain = load_certificates(_text(document, "chain").encode(), source='"chain"')
        bundle = TrustBundle.from_pem(
            _text(document, "trustBundle").encode(), source='"trustBundle"'
        )
        spiffe_id = parse_spiffe_id(_text(document, "spiffeId"))
    except (ValueError, PkiError) as exc:
        raise AnswerError(f"the CA service's answer is malformed: {exc}", rule="answer") from exc
    return Issued(spiffe_id, tuple(chain), bundle)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "message": message, **extra}


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key!r} is missing or not a string")
    return value
