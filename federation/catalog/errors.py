"""Errors the catalog raises, each carrying the HTTP answer Consul gives for it.

Operations (``catalog``, ``kv``, ``sessions``) raise ``RPCError`` where Consul's server
returns an RPC error, which its HTTP layer turns into a 500 with the message as the body.
The HTTP front (``app``) raises ``HTTPError`` for the answers the HTTP layer makes itself.
"""

from __future__ import annotations


class CatalogError(Exception):
    """Base of the catalog's errors: a status and a plain-text body."""

    status = 500

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RPCError(CatalogError):
    """A server-side validation or apply error: Consul answers 500 with the message."""

    status = 500


class HTTPError(CatalogError):
    """An answer the HTTP layer makes itself (400, 404, 405, 413, ...)."""

    def __init__(self, status: int, reason: str, *, allow: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.allow = allow
