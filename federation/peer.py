"""The controller's TLS listener: who is calling, in every request's ASGI scope.

With ``isthmus federation run --cert --key --bundle`` the controller serves its HTTP app over
TLS and asks every client for a certificate (``CERT_OPTIONAL``: a certificate that is sent
must chain to the trust bundle, but probes and scrapers without one still reach ``/ready``
and ``/metrics``). The snapshot API then serves only proxies that present an SVID of the
mesh (``federation.snapshots.server``).

uvicorn does not put the peer certificate in the scope, so :func:`serve_tls` gives it an
HTTP protocol class that reads the peer's SPIFFE ID once per connection, after the
handshake (``pki.tls_context.peer_spiffe_id``: the X.509-SVID leaf rules and the trust
domain), and wraps the app so that each request of that connection carries it as
``scope["extensions"]["isthmus.peer"]`` (:func:`peer_of` reads it back).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from pki.errors import VerificationError
from pki.spiffe import SpiffeId

if TYPE_CHECKING:  # pki.tls_context loads cryptography's x509 (~50 ms): only with mTLS
    from pki.tls_context import TlsContexts

PEER_EXTENSION = "isthmus.peer"


@dataclass(frozen=True, slots=True)
class Peer:
    """The client of a request: its SPIFFE ID, or why it has none."""

    spiffe_id: SpiffeId | None
    error: str = ""


NO_TLS = Peer(None, "the request did not come over TLS")


def peer_of(scope: Scope) -> Peer:
    extensions = scope.get("extensions") or {}
    found = extensions.get(PEER_EXTENSION)
    return found if isinstance(found, Peer) else NO_TLS


class _WithPeer:
    """``app``, with ``peer`` in the scope of each request."""

    __slots__ = ("app", "peer")

    def __init__(self, app: ASGIApp, peer: Peer) -> None:
        self.app = app
        self.peer = peer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["extensions"] = {**(scope.get("extensions") or {}), PEER_EXTENSION: self.peer}
        await self.app(scope, receive, send)


def identify(transport: asyncio.BaseTransport, trust_domain: str) -> Peer:
    from pki.tls_context import peer_spiffe_id

    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return NO_TLS
    try:
        return Peer(peer_spiffe_id(ssl_object, trust_domain=trust_domain))
    except VerificationError as exc:
        return Peer(None, str(exc))


def _peer_protocol(base: type[asyncio.Protocol], trust_domain: str) -> type[asyncio.Protocol]:
    class PeerProtocol(base):  # type: ignore[valid-type,misc]  # uvicorn's chosen class
        app: ASGIApp

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self.app = _WithPeer(self.app, identify(transport, trust_domain))

    return PeerProtocol


def serve_tls(config: uvicorn.Config, contexts: TlsContexts, trust_domain: str) -> None:
    """Make ``config`` (before the server starts) serve TLS with ``contexts``' current
    certificate on every new handshake, and put each client's identity in the scope."""
    if not config.loaded:
        config.load()
    # After load(): uvicorn would build its context from files; ours follows the credentials.
    config.ssl = contexts.listening_context()
    config.http_protocol_class = _peer_protocol(config.http_protocol_class, trust_domain)
