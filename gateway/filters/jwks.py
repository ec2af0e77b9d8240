"""JSON Web Key Sets: which keys may verify which token, and the current keys of a source.

Pure code, no I/O. ``gateway.filters.jwks_fetch`` feeds fetched bodies into a
:class:`JwksSource`; ``gateway.filters.jwt_verify`` asks its :class:`KeySet` for the keys that
may verify a token.

Each key is bound to the algorithms it may verify, decided from the key and never from the
token, so that a token cannot pick how it is checked (no ``alg: none``, no HMAC keyed with an
RSA public key):

* ``RSA``: its ``alg`` if set (it must start with ``RS`` or ``PS``), else RS256/384/512 and
  PS256/384/512;
* ``EC``: the algorithm of its curve (P-256 ES256, P-384 ES384, P-521 ES512); an ``alg``
  that disagrees with the curve is an error;
* ``OKP`` (Ed25519): EdDSA.

Symmetric (``oct``) keys and keys with ``use: enc`` are skipped. A set without any usable key
is refused, as Envoy refuses it ("Jwks doesn't have any valid public key").

A :class:`JwksSource` keeps the last good set: a failed fetch or a bad body leaves the keys
it had in place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
OKP_ALGORITHMS = {"Ed25519": "EdDSA"}
# What a token header may name and still get as far as the key lookup (Envoy's list).
KNOWN_ALGORITHMS = frozenset(
    [*RSA_ALGORITHMS, *EC_ALGORITHMS.values(), "EdDSA", "HS256", "HS384", "HS512"]
)
NO_VALID_KEY = "Jwks doesn't have any valid public key"


class JwksError(ValueError):
    """A key set that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Key:
    kid: str | None
    # algorithm -> the key bound to it
    by_algorithm: Mapping[str, jwt.PyJWK]


class KeySet:
    __slots__ = ("keys",)

    def __init__(self, keys: tuple[Key, ...]) -> None:
        self.keys = keys

    @classmethod
    def parse(cls, body: bytes | str) -> KeySet:
        """The usable keys of a JWKS document; raises :class:`JwksError`."""
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise JwksError(f"Jwks is an invalid JSON: {e}") from e
        if not isinstance(doc, dict) or "keys" not in doc:
            raise JwksError("Jwks does not have [keys] field")
        if not isinstance(doc["keys"], list):
            raise JwksError("[keys] in Jwks is not an array")
        keys = tuple(k for k in (_key(d) for d in doc["keys"]) if k is not None)
        if not keys:
            raise JwksError(NO_VALID_KEY)
        return cls(keys)

    def candidates(self, kid: str | None, algorithm: str) -> list[jwt.PyJWK]:
        """The keys that may verify a token with header ``kid`` and ``alg``. With a ``kid``,
        only keys with that id qualify (a key without one qualifies too, as in Envoy)."""
        found = []
        for key in self.keys:
            if kid is not None and key.kid is not None and key.kid != kid:
                continue
            bound = key.by_algorithm.get(algorithm)
            if bound is not None:
                found.append(bound)
        return found

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        kids = ", ".join(k.kid or "-" for k in self.keys)
        return f"<KeySet [{kids}]>"


def _key(data: Any) -> Key | None:
    """One JWK bound to its algorithms, or None when it is not a usable public key."""
    if not isinstance(data, dict) or data.get("use") == "enc":
        return None
    kty, alg, crv = data.get("kty"), data.get("alg"), data.get("crv")
    algorithms: tuple[str, ...]
    if kty == "RSA":
        if alg is None:
            algorithms = RSA_ALGORITHMS
        elif alg in RSA_ALGORITHMS:
            algorithms = (alg,)
        else:
            return None
    elif kty == "EC":
        curve_alg = EC_ALGORITHMS.get(crv) if isinstance(crv, str) else None
        if curve_alg is None or alg not in (None, curve_alg):
            return None
        algorithms = (curve_alg,)
    elif kty == "OKP":
        okp_alg = OKP_ALGORITHMS.get(crv) if isinstance(crv, str) else None
        if okp_alg is None or alg not in (None, okp_alg):
            return None
        algorithms = (okp_alg,)
    else:
        return None
    kid = data.get("kid")
    try:
        bound = {a: jwt.PyJWK(data, algorithm=a) for a in algorithms}
    except jwt.PyJWTError:
        return None
    return Key(kid if isinstance(kid, str) else None, bound)


class JwksSource:
    """The keys of one ``jwksUri`` (or of an inline ``jwks``): None until a first good set
    arrives, then the last good set."""

    __slots__ = ("error", "fetches", "keys", "uri")

    def __init__(self, uri: str | None = None) -> None:
        self.uri = uri
        self.keys: KeySet | None = None
        self.error: str | None = None  # why the last fetch failed; None after a success
        self.fetches = 0  # successful updates

    @classmethod
    def inline(cls, text: str) -> JwksSource:
        """A source for an inline ``jwks``; raises :class:`JwksError`."""
        source = cls()
        source.keys = KeySet.parse(text)
        return source

    def update(self, body: bytes) -> None:
        """Take a fetched body; a bad one is recorded in ``error`` and the keys stay."""
        try:
            keys = KeySet.parse(body)
        except JwksError as e:
            self.error = str(e)
            return
        self.keys = keys
        self.error = None
        self.fetches += 1

    def failed(self, reason: str) -> None:
        """A fetch that got no body: the keys stay."""
        self.error = reason

    def __repr__(self) -> str:
        state = f"{len(self.keys)} keys" if self.keys is not None else "no keys yet"
        return f"<JwksSource {self.uri or 'inline'} [{state}]>"
