"""Verify one JWT against the JWT rules that may accept it, as Envoy's jwt_authn does.

Pure code, no I/O (the keys come from a ``JwksSource`` that is already filled).
``gateway.filters.authn_jwt`` calls :func:`verify` for each token it finds. The checks run
in Envoy's order, and a failure carries Envoy's status text, which becomes the 401 body:

1. the form (three base64url parts, JSON header and payload, typed claims);
2. the header's ``alg`` (``none`` and unknown algorithms are refused);
3. the issuer (a rule whose ``issuer`` is the token's ``iss``; a rule without one takes
   any), else "Jwt issuer is not configured";
4. ``exp`` and ``nbf`` with :data:`CLOCK_SKEW_S` seconds of leeway (Envoy's default);
5. the audiences, when the rule lists some ("Audiences in Jwt are not allowed", the one
   failure Envoy answers with 403); ``http://``/``https://`` and a trailing ``/`` are ignored
   on both sides, as Envoy compares them;
6. the keys: none fetched yet gives "Jwks remote fetch is failed"; no key for the token's
   ``kid`` and ``alg`` gives "Jwks doesn't have key to match kid or alg from Jwt";
7. the signature, with PyJWT, each candidate key bound to its own algorithm.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.config.snapshot import JwtRule
from gateway.filters.jwks import KNOWN_ALGORITHMS, JwksSource

CLOCK_SKEW_S = 60
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*$")

BAD_FORM = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
UNKNOWN_ISSUER = "Jwt issuer is not configured"
EXPIRED = "Jwt is expired"
NOT_YET_VALID = "Jwt not yet valid"
AUDIENCE_NOT_ALLOWED = "Audiences in Jwt are not allowed"
FETCH_FAILED = "Jwks remote fetch is failed"
NO_MATCHING_KEY = "Jwks doesn't have key to match kid or alg from Jwt"
VERIFICATION_FAILS = "Jwt verification fails"


@dataclass(frozen=True, slots=True)
class Verified:
    rule: JwtRule
    payload: dict[str, Any]
    payload_segment: str  # the token's payload part, base64url as sent


@dataclass(frozen=True, slots=True)
class Failed:
    status: str

    @property
    def http_status(self) -> int:
        return 403 if self.status == AUDIENCE_NOT_ALLOWED else 401


@dataclass(frozen=True, slots=True)
class Candidate:
    rule: JwtRule
    source: JwksSource


class _Invalid(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def verify(token: str, candidates: Sequence[Candidate]) -> Verified | Failed:
    """Check ``token`` against the rules of the location it was found in. Time is the wall
    clock, the one PyJWT checks ``exp`` and ``nbf`` with too."""
    try:
        header, payload, segment = _parse(token)
    except _Invalid as e:
        return Failed(e.status)
    alg = header["alg"]
    issuer = payload.get("iss")
    matching = [c for c in candidates if not c.rule.issuer or c.rule.issuer == issuer]
    if not matching:
        return Failed(UNKNOWN_ISSUER)
    now = time.time()
    exp, nbf = payload.get("exp"), payload.get("nbf")
    if nbf is not None and now + CLOCK_SKEW_S < nbf:
        return Failed(NOT_YET_VALID)
    if exp is not None and now > exp + CLOCK_SKEW_S:
        return Failed(EXPIRED)
    first: Failed | None = None
    for candidate in matching:
        result = _check(token, header, payload, alg, candidate)
        if result is None:
            return Verified(candidate.rule, payload, segment)
        first = first or result
    assert first is not None
    return first


def _check(
    token: str, header: dict[str, Any], payload: dict[str, Any], alg: str, c: Candidate
) -> Failed | None:
    rule = c.rule
    if rule.audiences and not audiences_allowed(payload.get("aud"), rule.audiences):
        return Failed(AUDIENCE_NOT_ALLOWED)
    keys = c.source.keys
    if keys is None:
        return Failed(FETCH_FAILED)
    kid = header.get("kid")
    found = keys.candidates(kid, alg)
    if not found:
        return Failed(NO_MATCHING_KEY)
    for key in found:
        try:
            jwt.decode(
                token,
                key=key,
                algorithms=[key.algorithm_name],
                issuer=rule.issuer or None,
                leeway=CLOCK_SKEW_S,
                options={"verify_aud": False, "verify_iat": False},
            )
        except jwt.ExpiredSignatureError:
            return Failed(EXPIRED)
        except jwt.ImmatureSignatureError:
            return Failed(NOT_YET_VALID)
        except jwt.InvalidIssuerError:
            return Failed(UNKNOWN_ISSUER)
        except jwt.PyJWTError:
            continue  # a bad signature with this key: try the next one
        return None
    return Failed(VERIFICATION_FAILS)


def audiences_allowed(aud: Any, allowed: Sequence[str]) -> bool:
    """Whether any of the token's audiences is allowed (compared as Envoy compares them)."""
    offered = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    wanted = {_sanitize(a) for a in allowed}
    return any(isinstance(a, str) and _sanitize(a) in wanted for a in offered)


def _sanitize(audience: str) -> str:
    for scheme in ("http://", "https://"):
        if audience.startswith(scheme):
            audience = audience[len(scheme) :]
            break
    return audience.rstrip("/")


def _parse(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise _Invalid(BAD_FORM)
    header = _json_part(parts[0], "header")
    payload = _json_part(parts[1], "payload")
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise _Invalid("Jwt header [alg] field is required and must be a string")
    if alg not in KNOWN_ALGORITHMS:
        raise _Invalid("Jwt header [alg] is not supported")
    if "kid" in header and not isinstance(header["kid"], str):
        raise _Invalid("Jwt header [kid] field is not a string")
    for claim in ("iss", "sub", "jti"):
        if claim in payload and not isinstance(payload[claim], str):
            raise _Invalid(f"Jwt payload [{claim}] field is not a string")
    for claim in ("iat", "nbf", "exp"):
        value = payload.get(claim)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Invalid(f"Jwt payload [{claim}] field is not an integer")
        if value <= 0:
            raise _Invalid(f"Jwt payload [{claim}] field is not a positive integer")
    aud = payload.get("aud")
    if aud is not None and not (
        isinstance(aud, str) or (isinstance(aud, list) and all(isinstance(a, str) for a in aud))
    ):
        raise _Invalid("Jwt payload [aud] field is not a string or string list")
    return header, payload, parts[1]


def _json_part(part: str, name: str) -> dict[str, Any]:
    try:
        if not _BASE64URL.match(part):
            raise ValueError("not base64url")
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as e:
        raise _Invalid(f"Jwt {name} is an invalid Base64url encoded") from e
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise _Invalid(f"Jwt {name} is an invalid JSON") from e
    if not isinstance(value, dict):
        raise _Invalid(f"Jwt {name} is an invalid JSON")
    return value
