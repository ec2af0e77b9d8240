"""TLS contexts from workload credentials, swapped for new connections only.

Called by the proxy's mTLS listeners and upstream connections (through :class:`TlsContexts`,
which follows a :class:`~pki.credentials.CredentialManager`), by the CA service for its own
server certificate (:func:`switching_server_context`), and by tests.

- :func:`server_context` / :func:`client_context`: TLS 1.2 or newer (1.3 is chosen whenever the
  peer has it), ALPN ``h2`` then ``http/1.1``, forward-secret AEAD suites only, no compression
  or renegotiation. With mTLS the peer must present a certificate that chains to the trust
  bundle (``CERT_REQUIRED``). Host names are not checked: a peer is known by its SPIFFE ID,
  read after the handshake by :func:`peer_spiffe_id` (``ssl`` does not read URI SANs).
- ``ssl`` loads certificates and keys from files only. The key is written to an anonymous
  in-memory file (``memfd``) and loaded from ``/proc/self/fd``; where that does not exist, to a
  private temporary directory, encrypted with a one-time password, and deleted at once.
- A context is never changed once built. New material means new contexts; a connection keeps
  the context it was made with, so swapping never touches live connections. A server whose
  listening context is fixed (``asyncio.start_server``, uvicorn) listens with
  :func:`switching_server_context`, which hands each new handshake the current context.
"""

from __future__ import annotations

import os
import secrets
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pki.bundle import TrustBundle
from pki.credentials import CredentialManager, Credentials
from pki.errors import ChainError, SvidRuleError, TrustDomainError
from pki.files import write_private_file
from pki.keys import PrivateKey, private_key_to_pem
from pki.pem import certificates_to_pem
from pki.spiffe import SpiffeId, parse_trust_domain
from pki.svid import check_leaf

ALPN: tuple[str, ...] = ("h2", "http/1.1")
# TLS 1.2 suites (1.3 has its own fixed AEAD list): ECDHE only, AEAD only.
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
_PROC_FD = Path("/proc/self/fd")


class PeerCertificate(Protocol):
    """What :func:`peer_spiffe_id` needs: an ``ssl.SSLObject`` or ``ssl.SSLSocket``."""

    def getpeercert(self, binary_form: bool, /) -> object: ...


def server_context(
    chain: Sequence[x509.Certificate],
    key: PrivateKey,
    bundle: TrustBundle | None,
    *,
    require_client_cert: bool = True,
    optional_client_cert: bool = False,
    alpn: Sequence[str] = ALPN,
) -> ssl.SSLContext:
    """A server context presenting ``chain`` (leaf first); with ``require_client_cert``, mTLS
    against ``bundle``. ``optional_client_cert``: ask for a client certificate and verify it
    against ``bundle`` when one is sent, but let clients without one in (the application
    then decides per request)."""
    ctx = _base(ssl.PROTOCOL_TLS_SERVER, alpn)
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    load_cert_chain(ctx, chain, key)
    if require_client_cert or optional_client_cert:
        _trust(ctx, bundle)
        ctx.verify_mode = ssl.CERT_OPTIONAL if optional_client_cert else ssl.CERT_REQUIRED
    return ctx


def client_context(
    chain: Sequence[x509.Certificate] | None,
    key: PrivateKey | None,
    bundle: TrustBundle,
    *,
    alpn: Sequence[str] = ALPN,
) -> ssl.SSLContext:
    """A client context that verifies the server against ``bundle`` and presents ``chain``
    (when given). The server's identity is checked with :func:`peer_spiffe_id`."""
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT, alpn)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    _trust(ctx, bundle)
    if chain is not None and key is not None:
        load_cert_chain(ctx, chain, key)
    return ctx


def switching_server_context(
    current: Callable[[], ssl.SSLContext],
    *,
    require_client_cert: bool = True,
    optional_client_cert: bool = False,
    alpn: Sequence[str] = ALPN,
) -> ssl.SSLContext:
    """A listening context that gives each new handshake ``current()``.

    Its SNI callback (run for every ClientHello, with or without SNI) replaces the
    connection's context before the certificate is chosen. The verify mode stays the one set
    here (OpenSSL keeps it per connection), so it must match the contexts handed out.
    """
    outer = _base(ssl.PROTOCOL_TLS_SERVER, alpn)
    if optional_client_cert:
        outer.verify_mode = ssl.CERT_OPTIONAL
    else:
        outer.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE

    def pick(connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        connection.context = current()

    outer.sni_callback = pick
    return outer


def peer_spiffe_id(
    connection: PeerCertificate | None, *, trust_domain: str | None = None
) -> SpiffeId:
    """The SPIFFE ID of the peer of a finished handshake, after the X.509-SVID leaf rules.

    ``ssl`` has already checked the chain to the bundle; this reads the URI SAN it does not
    read. Raises :class:`~pki.errors.VerificationError` subclasses: no certificate, a broken
    SVID rule, or (with ``trust_domain``) another trust domain.
    """
    # Positional: the low-level ``_ssl._SSLSocket`` (what some clients expose) takes no keywords.
    der = None if connection is None else connection.getpeercert(True)
    if not isinstance(der, bytes) or not der:
        raise ChainError("the peer presented no certificate", rule="no-certificate")
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise SvidRuleError(f"the peer certificate is unreadable ({exc})", rule="der") from exc
    spiffe_id = check_leaf(cert)
    if trust_domain is not None and not spiffe_id.member_of(parse_trust_domain(trust_domain)):
        raise TrustDomainError(
            f"{spiffe_id} is not in trust domain {trust_domain}", rule="trust-domain"
        )
    return spiffe_id


def load_cert_chain(
    ctx: ssl.SSLContext, chain: Sequence[x509.Certificate], key: PrivateKey
) -> None:
    """``ctx.load_cert_chain`` from memory (see the module docstring for where the key goes)."""
    chain_pem = certificates_to_pem(chain)
    if hasattr(os, "memfd_create") and _PROC_FD.is_dir():
        key_pem = private_key_to_pem(key)
        fds = [os.memfd_create("isthmus-chain", os.MFD_CLOEXEC)]
        try:
            fds.append(os.memfd_create("isthmus-key", os.MFD_CLOEXEC))
            for fd, data in zip(fds, (chain_pem, key_pem), strict=True):
                _write_all(fd, data)
            ctx.load_cert_chain(_PROC_FD / str(fds[0]), _PROC_FD / str(fds[1]))
        finally:
            for fd in fds:
                os.close(fd)
        return
    password = secrets.token_bytes(32)
    directory = Path(tempfile.mkdtemp(prefix="isthmus-tls-"))  # mode 0700
    try:
        write_private_file(directory / "chain.pem", chain_pem)
        write_private_file(
            directory / "key.pem",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(password),
            ),
        )
        ctx.load_cert_chain(directory / "chain.pem", directory / "key.pem", password=password)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class TlsContexts:
    """The current server and client contexts of one workload, rebuilt on every new
    credential (a renewal, or a new trust bundle).

    :meth:`server` and :meth:`client` return the contexts to use for a connection being made
    now; :meth:`listening_context` is a stable context for servers whose context is fixed at
    bind time. Reads are lock-free (one tuple swap); updates may come from any thread.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        require_client_cert: bool = True,
        optional_client_cert: bool = False,
        alpn: Sequence[str] = ALPN,
    ) -> None:
        self.require_client_cert = require_client_cert
        self.optional_client_cert = optional_client_cert
        self.alpn = tuple(alpn)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[TlsContexts], None]] = []
        self.generation = 0
        self._current = self._build(credentials)

    @classmethod
    def following(
        cls,
        manager: CredentialManager,
        *,
        require_client_cert: bool = True,
        alpn: Sequence[str] = ALPN,
    ) -> TlsContexts:
        """Contexts for ``manager``'s current credentials, rebuilt on each of its updates."""
        contexts = cls(manager.current(), require_client_cert=require_client_cert, alpn=alpn)
        manager.on_update(contexts.update)
        return contexts

    @property
    def credentials(self) -> Credentials:
        return self._current[0]

    def server(self) -> ssl.SSLContext:
        return self._current[1]

    def client(self) -> ssl.SSLContext:
        return self._current[2]

    def listening_context(self) -> ssl.SSLContext:
        return switching_server_context(
            self.server,
            require_client_cert=self.require_client_cert,
            optional_client_cert=self.optional_client_cert,
            alpn=self.alpn,
        )

    def on_rebuild(self, callback: Callable[[TlsContexts], None]) -> None:
        self._listeners.append(callback)

    def update(self, credentials: Credentials) -> None:
        built = self._build(credentials)
        with self._lock:
            self._current = built
            self.generation += 1
        for callback in list(self._listeners):
            callback(self)

    def _build(
        self, credentials: Credentials
    ) -> tuple[Credentials, ssl.SSLContext, ssl.SSLContext]:
        server = server_context(
            credentials.chain,
            credentials.key,
            credentials.bundle,
            require_client_cert=self.require_client_cert,
            optional_client_cert=self.optional_client_cert,
            alpn=self.alpn,
        )
        client = client_context(
            credentials.chain, credentials.key, credentials.bundle, alpn=self.alpn
        )
        return credentials, server, client


def _base(protocol: ssl._SSLMethod, alpn: Sequence[str]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.set_ciphers(_TLS12_CIPHERS)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def _trust(ctx: ssl.SSLContext, bundle: TrustBundle | None) -> None:
    # An empty bundle means the trust domain is revoked: load nothing, so nothing verifies.
    if bundle is not None and bundle.roots:
        ctx.load_verify_locations(cadata=bundle.to_pem().decode("ascii"))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
