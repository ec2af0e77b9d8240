"""Server-side TLS contexts for HTTPS listeners, with the certificate chosen by SNI.

:class:`SniContexts` holds one ``ssl.SSLContext`` per certificate and picks one in the
handshake's SNI callback: an exact listener hostname first, then the longest wildcard, then
the default (the first certificate). The mapping can be replaced while the listener runs, so
a reloaded Secret serves new connections and leaves live ones alone. ALPN offers ``h2`` and
``http/1.1``.
"""

from __future__ import annotations

import os
import ssl
import tempfile

from gateway.config.snapshot import CertificatePair

ALPN = ["h2", "http/1.1"]


def context_from_pem(cert_pem: str, key_pem: str, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.set_alpn_protocols(alpn or ALPN)
    # load_cert_chain reads files only; the key material lives in a private temp dir briefly.
    with tempfile.TemporaryDirectory() as tmp:
        cert_path = os.path.join(tmp, "tls.crt")
        key_path = os.path.join(tmp, "tls.key")
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key_pem)
        with open(cert_path, "w") as f:
            f.write(cert_pem)
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


class SniContexts:
    def __init__(self, pairs: tuple[CertificatePair, ...], alpn: list[str] | None = None) -> None:
        if not pairs:
            raise ValueError("an HTTPS listener needs at least one certificate")
        self.alpn = alpn or ALPN
        self.exact: dict[str, ssl.SSLContext] = {}
        self.wildcard: list[tuple[str, ssl.SSLContext]] = []
        self.default: ssl.SSLContext | None = None
        cache: dict[tuple[str, str], ssl.SSLContext] = {}
        for pair in pairs:
            key = (pair.cert_pem, pair.key_pem)
            ctx = cache.get(key)
            if ctx is None:
                ctx = cache[key] = context_from_pem(pair.cert_pem, pair.key_pem, self.alpn)
            if self.default is None:
                self.default = ctx
            host = (pair.hostname or "").lower()
            if not host:
                continue
            if host.startswith("*."):
                self.wildcard.append((host[1:], ctx))
            else:
                self.exact.setdefault(host, ctx)
        self.wildcard.sort(key=lambda item: -len(item[0]))

    def select(self, server_name: str | None) -> ssl.SSLContext | None:
        if server_name:
            name = server_name.lower()
            ctx = self.exact.get(name)
            if ctx is not None:
                return ctx
            for suffix, wctx in self.wildcard:
                if name.endswith(suffix) and len(name) > len(suffix):
                    return wctx
        return self.default


class ListenerTLS:
    """The context a listening socket is created with; its SNI callback reads ``current``.

    The socket keeps the context it was created with for its lifetime, so certificate
    changes go through the SNI callback, which every handshake calls (even without SNI).
    """

    def __init__(self, contexts: SniContexts) -> None:
        assert contexts.default is not None
        self.current = contexts
        self.context = contexts.default
        self.context.sni_callback = self._on_sni

    def update(self, contexts: SniContexts) -> None:
        self.current = contexts

    def _on_sni(self, sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        chosen = self.current.select(server_name)
        if chosen is not None and chosen is not sock.context:
            sock.context = chosen
        sock.isthmus_sni = server_name  # type: ignore[attr-defined]
