"""What a request offers to AuthorizationPolicy rules: Istio's attributes, computed lazily.

``gateway.filters.authz`` wraps each request's :class:`RequestContext` in one
:class:`RequestAttributes`; the compiled rules of ``gateway.filters.authz_rules`` read it.
Each attribute is computed on first use and kept, so a request evaluated against many rules
normalizes its path or parses its peer address once.

Sources: the peer's SPIFFE ID (``RequestContext.peer_principal``, set by mTLS; None for
plaintext, so that ``principals`` and ``namespaces`` then match nothing, as in Istio), the
downstream address, the request head, the listener port, and the verified JWT claims
(``RequestContext.jwt_payload``, set by ``gateway.filters.authn_jwt``). Repeated headers are
joined with ``,`` as Envoy joins them before matching. As Istio configures Envoy, the
``scope`` and ``permission`` claims are also read as space-separated lists.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from gateway.filters.authz_match import namespace_of, normalize_path, parse_address, principal_of
from gateway.filters.base import RequestContext

_UNSET: Any = object()
_SPACE_DELIMITED = frozenset({"scope", "permission"})


class RequestAttributes:
    __slots__ = ("_address", "_path", "ctx", "port")

    def __init__(self, ctx: RequestContext, port: int) -> None:
        self.ctx = ctx
        self.port = port
        self._path: str | None = None
        self._address: Any = _UNSET

    @property
    def host(self) -> str:
        return self.ctx.request.authority

    @property
    def method(self) -> str:
        return self.ctx.request.method

    @property
    def path(self) -> str:
        """The normalized path, without the query."""
        path = self._path
        if path is None:
            path = self._path = normalize_path(self.ctx.request.path)
        return path

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        address = self._address
        if address is _UNSET:
            address = self._address = parse_address(self.ctx.downstream_address)
        result: ipaddress.IPv4Address | ipaddress.IPv6Address | None = address
        return result

    @property
    def principal(self) -> str | None:
        return principal_of(self.ctx.peer_principal)

    @property
    def namespace(self) -> str | None:
        return namespace_of(self.principal)

    def header(self, name: str) -> str | None:
        """Every value of header ``name`` (lower-case) joined with ``,``; None when absent."""
        key = name.encode("latin-1")
        values = [v.decode("latin-1") for k, v in self.ctx.request.headers if k == key]
        if not values:
            return None
        return ",".join(values)

    @property
    def issuer(self) -> str | None:
        return self._claim_string("iss")

    @property
    def subject(self) -> str | None:
        return self._claim_string("sub")

    @property
    def audiences(self) -> list[str]:
        return self.claim(("aud",))

    @property
    def presenter(self) -> list[str]:
        return self.claim(("azp",))

    def claim(self, path: tuple[str, ...]) -> list[str]:
        """The string values of the claim at ``path`` (nested objects): a string claim gives
        one value, a list claim its string items; anything else (or no JWT) gives none."""
        value: Any = self.ctx.jwt_payload
        for name in path:
            if not isinstance(value, dict):
                return []
            value = value.get(name)
        if isinstance(value, str):
            if len(path) == 1 and path[0] in _SPACE_DELIMITED:
                return value.split()
            return [value]
        if isinstance(value, list):
            return [v for v in value if isinstance(v, str)]
        return []

    def _claim_string(self, name: str) -> str | None:
        payload = self.ctx.jwt_payload
        if payload is None:
            return None
        value = payload.get(name)
        return value if isinstance(value, str) else None
