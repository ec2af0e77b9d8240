"""The proxy's own workload identity as TLS contexts, swapped for new connections only.

One :class:`WorkloadIdentity` per worker. The engine (``gateway.proxy.engine``) makes it from
the first credentials the supervisor sends and calls :meth:`WorkloadIdentity.update` with
every later set (a renewal, a new trust bundle); the mTLS listeners
(``gateway.transport.mtls_listener``) and the upstream TLS origination
(``gateway.upstream.tls``, through its ``MeshIdentity`` protocol) read it.

- Contexts are built lazily from the current credentials and never changed; an update drops
  them, so the next handshake builds new ones while every live connection keeps the context
  it was made with.
- :meth:`listening_context` is made once: its SNI callback (called for every ClientHello,
  with or without SNI) hands each handshake the current server context.
- :meth:`peer_id` applies what ``ssl`` does not (identity.md): the X.509-SVID leaf rules and
  the trust domain, on the certificate the peer presented; ``ssl`` has already checked the
  chain to the bundle and the validity window. Results are cached by certificate (DER), so
  a peer that reconnects is parsed once.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

from cryptography import x509

from pki.credentials import Credentials
from pki.errors import ChainError, SvidRuleError, TrustDomainError
from pki.spiffe import SpiffeId
from pki.svid import check_leaf
from pki.tls_context import ALPN, client_context, server_context, switching_server_context

_PEER_CACHE_MAX = 4096


class WorkloadIdentity:
    """The current SVID, key and bundle of this proxy, and the TLS contexts made of them."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.generation = 1
        self._server: ssl.SSLContext | None = None
        self._clients: dict[tuple[str, ...], ssl.SSLContext] = {}
        self._peers: dict[bytes, SpiffeId] = {}
        self._listening: ssl.SSLContext | None = None

    @property
    def spiffe_id(self) -> SpiffeId:
        return self.credentials.spiffe_id

    @property
    def trust_domain(self) -> str:
        return self.credentials.spiffe_id.trust_domain

    def update(self, credentials: Credentials) -> bool:
        """Use ``credentials`` for connections made from now on; False when nothing changed."""
        old = self.credentials
        if (
            old.chain == credentials.chain
            and old.bundle.fingerprints() == credentials.bundle.fingerprints()
            and old.key.public_key() == credentials.key.public_key()
        ):
            return False
        self.credentials = credentials
        self.generation += 1
        self._server = None
        self._clients = {}
        self._peers = {}
        return True

    # -- contexts -------------------------------------------------------------------------------

    def server_context(self) -> ssl.SSLContext:
        """The server context for a handshake starting now: our chain, client certificates
        required and verified against the bundle, ALPN ``h2`` then ``http/1.1``."""
        ctx = self._server
        if ctx is None:
            c = self.credentials
            ctx = self._server = server_context(c.chain, c.key, c.bundle, alpn=ALPN)
        return ctx

    def listening_context(self) -> ssl.SSLContext:
        """A stable context for a listening socket that hands out :meth:`server_context`."""
        if self._listening is None:
            self._listening = switching_server_context(self.server_context, alpn=ALPN)
        return self._listening

    def client_context(self, alpn: Sequence[str]) -> ssl.SSLContext:
        """A client context presenting our SVID and verifying the server against the bundle,
        offering ``alpn``. Host names are not checked: see :meth:`peer_id`."""
        key = tuple(alpn)
        ctx = self._clients.get(key)
        if ctx is None:
            c = self.credentials
            ctx = self._clients[key] = client_context(c.chain, c.key, c.bundle, alpn=key)
        return ctx

    # -- peers ----------------------------------------------------------------------------------

    def peer_id(self, ssl_object: ssl.SSLObject | None) -> SpiffeId:
        """The SPIFFE ID of the peer of a finished handshake, in our trust domain.

        Raises :class:`~pki.errors.VerificationError` subclasses (``rule`` says which rule):
        no certificate, a broken X.509-SVID leaf rule, another trust domain.
        """
        der = None if ssl_object is None else ssl_object.getpeercert(binary_form=True)
        if not der:
            raise ChainError("the peer presented no certificate", rule="no-certificate")
        found = self._peers.get(der)
        if found is not None:
            return found
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise SvidRuleError(f"the peer certificate is unreadable ({exc})", rule="der") from exc
        spiffe_id = check_leaf(cert)
        if not spiffe_id.member_of(self.trust_domain):
            raise TrustDomainError(
                f"{spiffe_id} is not in trust domain {self.trust_domain}", rule="trust-domain"
            )
        if len(self._peers) >= _PEER_CACHE_MAX:
            self._peers.clear()
        self._peers[der] = spiffe_id
        return spiffe_id

    def __repr__(self) -> str:
        leaf = self.credentials.leaf
        return (
            f"<WorkloadIdentity {self.spiffe_id} generation={self.generation} "
            f"not_after={leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}>"
        )
