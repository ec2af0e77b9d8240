"""The filter contract: what every HTTP filter implements and what it may touch.

A route's filters run in order on the request path and in reverse on the response path; the
router (``gateway.filters.router``) is the terminal filter and is not in the chain. Filters are
built once per snapshot from the route rule's configuration and are shared by every request
that matches the rule, so they keep no per-request state on ``self``; per-request state goes
on the :class:`RequestContext`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.codec.messages import Headers, RequestHead, ResponseHead


@dataclass(slots=True)
class LocalReply:
    """An answer made by the proxy itself (redirect, error, rejection)."""

    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    flag: str = ""  # Envoy-style response flag for the access log and metrics, e.g. "NR".


@dataclass(slots=True)
class RequestContext:
    """Per-request state shared by the filters and the router."""

    request: RequestHead
    # The part of the path the matched PathPrefix covered, for ReplacePrefixMatch.
    matched_prefix: str | None = None
    # Clusters that get a copy of the request (RequestMirror), fire and forget.
    mirrors: list[str] = field(default_factory=list)
    downstream_address: str = ""
    downstream_tls: bool = False
    # The downstream peer's SPIFFE ID when it authenticated with mTLS, else None.
    peer_principal: str | None = None
    # The claims of the request's verified JWT (RequestAuthentication), else None.
    jwt_payload: dict[str, Any] | None = None
    # Seconds to wait before the upstream request (Fault delay); the handler honours it.
    delay_s: float = 0.0


class HttpFilter(Protocol):
    """One filter of a route's chain."""

    def on_request(self, ctx: RequestContext) -> LocalReply | None:
        """Inspect or rewrite the request. Return a reply to answer locally and stop the chain."""
        ...

    def on_response(self, ctx: RequestContext, response: ResponseHead) -> None:
        """Inspect or rewrite the response head on its way back."""
        ...
