"""SPIFFE IDs: parsing, validation and the workload convention (identity.md, "SPIFFE ID").

Every place that reads an identity goes through :func:`parse_spiffe_id`: the CA reading a CSR,
the verifier reading a peer's URI SAN, the commands reading ``--spiffe-id`` and the authorization
filters reading principals. Pure functions, no I/O.

Rules: ``spiffe://<trust-domain>/<path>``; no query, fragment, userinfo or port; the trust domain
is ``[a-z0-9._-]``, at most 255 bytes; path segments are ``[a-zA-Z0-9._-]`` with no empty, ``.``
or ``..`` segment, no trailing ``/`` and no percent-encoding; the whole ID is at most 2048 bytes.
Scheme and trust domain are case-insensitive (they are lowercased here); the path is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pki.errors import SpiffeIdError

SCHEME = "spiffe"
_PREFIX = "spiffe://"
MAX_ID_BYTES = 2048
MAX_TRUST_DOMAIN_BYTES = 255

_TRUST_DOMAIN_CHARS = re.compile(r"[a-z0-9._-]+")
_SEGMENT_CHARS = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """A valid SPIFFE ID. Build it with :func:`parse_spiffe_id` or :func:`workload_id`.

    ``trust_domain`` is lowercase; ``path`` is ``""`` (the trust domain's own ID, used by signing
    certificates) or starts with ``/``.
    """

    trust_domain: str
    path: str

    def __str__(self) -> str:
        return f"{_PREFIX}{self.trust_domain}{self.path}"

    @property
    def uri(self) -> str:
        """The ID as it goes into a URI SAN."""
        return str(self)

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path[1:].split("/")) if self.path else ()

    def member_of(self, trust_domain: str) -> bool:
        """Whether the ID belongs to ``trust_domain`` (compared case-insensitively)."""
        return self.trust_domain == trust_domain.lower()


def parse_spiffe_id(text: str) -> SpiffeId:
    """Parse and validate ``text``; raise :class:`SpiffeIdError` naming the rule broken."""
    if not isinstance(text, str):
        raise SpiffeIdError("SPIFFE ID: expected a string", rule="type")
    if not text:
        raise SpiffeIdError("SPIFFE ID: empty", rule="empty")
    if len(text.encode("utf-8")) > MAX_ID_BYTES:
        raise SpiffeIdError(f"SPIFFE ID: longer than {MAX_ID_BYTES} bytes", rule="id-too-long")
    if text[: len(_PREFIX)].lower() != _PREFIX:
        raise SpiffeIdError(f"SPIFFE ID {text!r}: the scheme must be 'spiffe://'", rule="scheme")
    rest = text[len(_PREFIX) :]
    # Query and fragment first: '?' and '#' end the path in URI syntax, so a message about
    # the path charset would mislead.
    if "?" in rest:
        raise SpiffeIdError(f"SPIFFE ID {text!r}: a query is not allowed", rule="query")
    if "#" in rest:
        raise SpiffeIdError(f"SPIFFE ID {text!r}: a fragment is not allowed", rule="fragment")
    if "%" in rest:
        raise SpiffeIdError(
            f"SPIFFE ID {text!r}: percent-encoding is not allowed", rule="percent-encoding"
        )
    authority, slash, path = rest.partition("/")
    trust_domain = _check_authority(text, authority)
    return SpiffeId(trust_domain, _check_path(text, slash + path))


def parse_trust_domain(text: str) -> str:
    """Validate a trust domain name (``example.org``, or ``spiffe://example.org``); lowercase it."""
    if text[: len(_PREFIX)].lower() == _PREFIX:
        spiffe_id = parse_spiffe_id(text)
        if spiffe_id.path:
            raise SpiffeIdError(
                f"trust domain {text!r}: a trust domain has no path", rule="trust-domain-path"
            )
        return spiffe_id.trust_domain
    return _check_authority(text, text)


def trust_domain_id(trust_domain: str) -> SpiffeId:
    """The ID of the trust domain itself (``spiffe://td``), carried by signing certificates."""
    return SpiffeId(parse_trust_domain(trust_domain), "")


def workload_id(trust_domain: str, namespace: str, service_account: str) -> SpiffeId:
    """``spiffe://<td>/ns/<namespace>/sa/<serviceaccount>``, the convention shared with Istio."""
    td = parse_trust_domain(trust_domain)
    return parse_spiffe_id(f"{_PREFIX}{td}/ns/{namespace}/sa/{service_account}")


def workload_parts(spiffe_id: SpiffeId) -> tuple[str, str] | None:
    """``(namespace, service_account)`` when the ID follows the workload convention, else None."""
    segments = spiffe_id.segments
    if len(segments) == 4 and segments[0] == "ns" and segments[2] == "sa":
        return segments[1], segments[3]
    return None


def _check_authority(text: str, authority: str) -> str:
    if not authority:
        raise SpiffeIdError(f"SPIFFE ID {text!r}: the trust domain is empty", rule="trust-domain")
    if "@" in authority:
        raise SpiffeIdError(f"SPIFFE ID {text!r}: userinfo is not allowed", rule="userinfo")
    if ":" in authority:
        raise SpiffeIdError(f"SPIFFE ID {text!r}: a port is not allowed", rule="port")
    if len(authority.encode("utf-8")) > MAX_TRUST_DOMAIN_BYTES:
        raise SpiffeIdError(
            f"SPIFFE ID {text!r}: the trust domain is longer than {MAX_TRUST_DOMAIN_BYTES} bytes",
            rule="trust-domain-too-long",
        )
    lowered = authority.lower() if authority.isascii() else authority
    if not _TRUST_DOMAIN_CHARS.fullmatch(lowered):
        raise SpiffeIdError(
            f"SPIFFE ID {text!r}: the trust domain may only hold letters, digits, '.', '-' and '_'",
            rule="trust-domain-chars",
        )
    return lowered


def _check_path(text: str, path: str) -> str:
    if not path:
        return ""
    if path == "/" or path.endswith("/"):
        raise SpiffeIdError(
            f"SPIFFE ID {text!r}: the path must not end with '/'", rule="trailing-slash"
        )
    for segment in path[1:].split("/"):
        if not segment:
            raise SpiffeIdError(
                f"SPIFFE ID {text!r}: the path has an empty segment", rule="empty-segment"
            )
        if segment in (".", ".."):
            raise SpiffeIdError(
                f"SPIFFE ID {text!r}: the path has a '{segment}' segment", rule="dot-segment"
            )
        if not _SEGMENT_CHARS.fullmatch(segment):
            raise SpiffeIdError(
                f"SPIFFE ID {text!r}: path segment {segment!r} may only hold letters, digits, "
                "'.', '-' and '_'",
                rule="path-chars",
            )
    return path
