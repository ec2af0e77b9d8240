"""mTLS between two asyncio peers with the contexts of :mod:`pki.tls_context`, fed by credential
managers talking to the real CA service.

Covers the handshake (TLS 1.3, ALPN h2, both SPIFFE IDs read after it), renewals swapping the
contexts for new connections while a live connection carries on with its old certificates,
the trust bundle being followed, and the refusals (no client certificate, another root,
another trust domain).
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from pki import tls_context
from pki.authority import Authority, create_root
from pki.bundle import TrustBundle
from pki.cacerts import CaCerts
from pki.credentials import CredentialManager, static_token
from pki.errors import ChainError, TrustDomainError
from pki.keys import generate_key
from pki.service.app import ServiceSettings, build_app
from pki.service.audit import AuditLog
from pki.service.bootstrap import BootstrapTokens
from pki.service.server import CaServer
from pki.service.server_cert import ServerCertificate, server_names
from pki.spiffe import parse_spiffe_id
from pki.tls_context import TlsContexts, client_context, peer_spiffe_id

TD = "mesh.example"
WEB = f"spiffe://{TD}/ns/shop/sa/web"
CART = f"spiffe://{TD}/ns/shop/sa/cart"
TOKENS = {WEB: "web-token-0123456789abcdef", CART: "cart-token-0123456789abcdef"}


def intermediate(root: Authority, cluster: str) -> Authority:
    key = generate_key()
    return Authority.load(root.issue_intermediate(key.public_key(), cluster), key, root.full_chain)


class Mesh:
    """A CA service, and helpers to make managers and echo servers."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = create_root(generate_key(), TD)
        self.ca = CaCerts(intermediate(self.root, "east"), TrustBundle.of([self.root.cert]))
        tokens = tmp_path / "tokens.yaml"
        tokens.write_text(
            "".join(
                f'"{token}": {{namespace: shop, serviceAccount: {sa.rsplit("/", 1)[1]}}}\n'
                for sa, token in TOKENS.items()
            )
        )
        self.audit = AuditLog(tmp_path / "audit.jsonl")
        app = build_app(
            lambda: self.ca, BootstrapTokens(tokens), ServiceSettings(TD), audit=self.audit
        )
        dns, ips = server_names("127.0.0.1")
        self.server = CaServer(app, ServerCertificate(lambda: self.ca, dns, ips), "127.0.0.1", 0)
        self.echo_servers: list[asyncio.Server] = []
        self.echo_writers: list[asyncio.StreamWriter] = []

    async def manager(self, spiffe_id: str) -> CredentialManager:
        manager = CredentialManager(
            self.server.url,
            spiffe_id,
            static_token(TOKENS[spiffe_id]),
            self.ca.bundle,
            ttl=datetime.timedelta(minutes=10),
        )
        await manager.refresh()
        return manager

    async def echo_server(self, contexts: TlsContexts) -> tuple[int, list[str]]:
        """An echo server answering ``<peer SPIFFE ID> <line>``; returns its port and the
        peers it saw."""
        peers: list[str] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = str(peer_spiffe_id(writer.get_extra_info("ssl_object"), trust_domain=TD))
            peers.append(peer)
            self.echo_writers.append(writer)
            try:
                while line := await reader.readline():
                    writer.write(f"{peer} {line.decode()}".encode())
                    await writer.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(
            handle, "127.0.0.1", 0, ssl=contexts.listening_context()
        )
        self.echo_servers.append(server)
        return server.sockets[0].getsockname()[1], peers


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    mesh = Mesh(tmp_path)
    async with mesh.server:
        yield mesh
        for server in mesh.echo_servers:
            server.close()
            await server.wait_closed()
        for writer in mesh.echo_writers:
            writer.close()
    mesh.audit.close()


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.ssl: ssl.SSLObject = writer.get_extra_info("ssl_object")

    async def echo(self, text: str) -> str:
        self.writer.write(f"{text}\n".encode())
        await self.writer.drain()
        return (await asyncio.wait_for(self.reader.readline(), 10)).decode().rstrip("\n")

    @property
    def server_serial(self) -> int:
        der = self.ssl.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


async def connect(port: int, context: ssl.SSLContext) -> Connection:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    return Connection(reader, writer)


async def refused(port: int, context: ssl.SSLContext) -> bool:
    """Whether the server refuses the handshake. With TLS 1.3 the client's side finishes
    before the server has checked the client certificate, so the refusal may show only as
    an alert or an end of stream on the first read."""
    try:
        connection = await connect(port, context)
    except (ssl.SSLError, ConnectionError):
        return True
    try:
        return await connection.echo("let me in") == ""
    except (ssl.SSLError, ConnectionError):
        return True
    finally:
        await connection.close()


async def test_mtls_echo_with_spiffe_ids_on_both_sides(mesh: Mesh) -> None:
    server_side = TlsContexts.following(await mesh.manager(WEB))
    client_side = TlsContexts.following(await mesh.manager(CART))
    port, peers = await mesh.echo_server(server_side)

    connection = await connect(port, client_side.client())
    try:
        assert await connection.echo("hello") == f"{CART} hello"
        assert peers == [CART]
        assert peer_spiffe_id(connection.ssl) == parse_spiffe_id(WEB)
        assert connection.ssl.selected_alpn_protocol() == "h2"
        assert connection.ssl.version() == "TLSv1.3"
    finally:
        await connection.close()


async def test_renewal_swaps_contexts_for_new_connections_only(mesh: Mesh) -> None:
    web, cart = await mesh.manager(WEB), await mesh.manager(CART)
    server_side, client_side = TlsContexts.following(web), TlsContexts.following(cart)
    port, peers = await mesh.echo_server(server_side)
    old_server_serial = web.current().serial

    live = await connect(port, client_side.client())
    try:
        assert await live.echo("one") == f"{CART} one"
        await web.refresh()  # the server renews: new key, new certificate, new contexts
        await cart.refresh()  # and so does the client
        assert server_side.generation == 1 and client_side.generation == 1
        assert web.current().serial != old_server_serial

        fresh = await connect(port, client_side.client())
        try:
            assert await fresh.echo("two") == f"{CART} two"
            assert fresh.server_serial == web.current().serial
        finally:
            await fresh.close()

        # The live connection is untouched: same session, same certificates, still working.
        assert await live.echo("three") == f"{CART} three"
        assert live.server_serial == old_server_serial
    finally:
        await live.close()
    assert peers == [CART, CART]


async def test_a_client_without_a_certificate_is_refused(mesh: Mesh) -> None:
    port, peers = await mesh.echo_server(TlsContexts.following(await mesh.manager(WEB)))
    anonymous = client_context(None, None, mesh.ca.bundle)
    assert await refused(port, anonymous)
    assert peers == []


async def test_a_client_under_another_root_is_refused(mesh: Mesh) -> None:
    port, peers = await mesh.echo_server(TlsContexts.following(await mesh.manager(WEB)))
    stranger_root = create_root(generate_key(), TD)
    stranger = intermediate(stranger_root, "west")
    key = generate_key()
    leaf = stranger.sign_leaf(key.public_key(), parse_spiffe_id(CART))
    context = client_context((leaf, stranger.cert), key, mesh.ca.bundle)
    assert await refused(port, context)
    assert peers == []


async def test_a_new_trust_bundle_is_followed_by_new_contexts(mesh: Mesh) -> None:
    web = await mesh.manager(WEB)
    server_side = TlsContexts.following(web)
    port, peers = await mesh.echo_server(server_side)

    # A root rotation is staged: a workload already runs under the new root.
    new_root = create_root(generate_key(), TD)
    west = intermediate(new_root, "west")
    key = generate_key()
    leaf = west.sign_leaf(key.public_key(), parse_spiffe_id(CART))
    both = mesh.ca.bundle.merge(TrustBundle.of([new_root.cert]))
    newcomer = client_context((leaf, west.cert), key, both)

    assert await refused(port, newcomer)

    mesh.ca = CaCerts(mesh.ca.authority, both)  # the CA now hands out the two-root bundle
    await web.refresh()
    assert len(server_side.credentials.bundle) == 2

    connection = await connect(port, newcomer)
    try:
        assert await connection.echo("after") == f"{CART} after"
    finally:
        await connection.close()
    assert peers == [CART]


def test_peer_spiffe_id_refuses_missing_certificates_and_other_trust_domains() -> None:
    class Peer:
        def __init__(self, der: bytes | None) -> None:
            self.der = der

        def getpeercert(self, binary_form: bool = False) -> bytes | None:
            return self.der

    with pytest.raises(ChainError, match="no certificate"):
        peer_spiffe_id(Peer(None))
    with pytest.raises(ChainError):
        peer_spiffe_id(None)
    root = create_root(generate_key(), "other.example")
    leaf = root.sign_leaf(generate_key().public_key(), parse_spiffe_id("spiffe://other.example/a"))
    from cryptography.hazmat.primitives.serialization import Encoding

    der = leaf.public_bytes(Encoding.DER)
    assert str(peer_spiffe_id(Peer(der))) == "spiffe://other.example/a"
    with pytest.raises(TrustDomainError):
        peer_spiffe_id(Peer(der), trust_domain=TD)


async def test_keys_load_without_memfd_from_a_private_directory_that_is_removed(
    mesh: Mesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tls_context, "_PROC_FD", tmp_path / "no-proc")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    server_side = TlsContexts.following(await mesh.manager(WEB))
    client_side = TlsContexts.following(await mesh.manager(CART))
    port, _ = await mesh.echo_server(server_side)
    connection = await connect(port, client_side.client())
    try:
        assert await connection.echo("hi") == f"{CART} hi"
    finally:
        await connection.close()
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob("isthmus-tls-*")))
