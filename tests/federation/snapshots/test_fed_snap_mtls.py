"""The snapshot API over mTLS: proxies present their SVID, the controller checks it.

The server is the controller's own setup (``federation.peer.serve_tls`` with the
controller's SVID, ``build_app(hub, require_peer=True)``) under uvicorn in the test's loop;
the certificates come from a test PKI (``tests.gateway.mtls.mtls_support.MeshPki``). A real
``isthmus gateway run --control-plane https://...`` polls it with its SVID; raw clients show
what is refused and why; and a proxy refuses a controller outside its trust domain.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from federation.peer import serve_tls
from federation.snapshots.compile import ProxyInfo
from federation.snapshots.hub import SnapshotHub
from federation.snapshots.server import build_app
from gateway.config.resources import Resources
from gateway.config.snapshot import Snapshot, encode
from gateway.process.control_plane import ControlPlaneSource
from gateway.process.credentials import StaticCredentials
from pki.tls_context import TlsContexts
from tests.federation.snapshots.fed_snap_helpers import eventually, free_port, serve_app
from tests.gateway.mtls.mtls_support import TRUST_DOMAIN, MeshPki, Svid, mtls_client_context
from tests.support.gateway import GatewayProcess, gateway_yaml

PROXY = "ingress-mtls"


@pytest.fixture(scope="module")
def pki() -> MeshPki:
    return MeshPki()


@asynccontextmanager
async def serve_mtls(
    hub: SnapshotHub, controller: Svid, *, checked: bool = True
) -> AsyncIterator[str]:
    """The controller's setup: its SVID, client certificates asked for, peers in the scope.
    ``checked=False`` serves a certificate ``StaticCredentials`` would refuse, as it is."""
    if checked:
        files = StaticCredentials(controller.chain, controller.key, controller.bundle)
        contexts = TlsContexts(await files.first(), require_client_cert=False,
                               optional_client_cert=True, alpn=("http/1.1",))  # fmt: skip

        def tls(config: uvicorn.Config) -> None:
            serve_tls(config, contexts, TRUST_DOMAIN)

    else:

        def tls(config: uvicorn.Config) -> None:
            config.load()
            config.ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            config.ssl.load_cert_chain(str(controller.chain), str(controller.key))

    async with serve_app(build_app(hub, require_peer=checked), tls=tls) as url:
        try:
            yield url
        finally:
            await hub.aclose()


def ready_hub(load_yaml: Callable[..., Resources]) -> SnapshotHub:
    """A hub with a snapshot for every proxy: one Gateway listener."""
    hub = SnapshotHub("east")
    hub.update(load_yaml(gateway_yaml(free_port())), {})
    hub.flush()
    return hub


async def test_a_proxy_polls_over_mtls_with_its_svid(
    tmp_path: Path, pki: MeshPki, load_yaml: Callable[..., Resources]
) -> None:
    hub = ready_hub(load_yaml)
    controller = pki.issue(tmp_path / "controller", "isthmus-system", "isthmus-federation")
    proxy = pki.issue(tmp_path / "proxy", "default", "isthmus-ingress")
    async with serve_mtls(hub, controller) as url:
        gateway = GatewayProcess(tmp_path / "gw", extra_args=["--proxy-id", PROXY, *proxy.args()],
                                 control_plane=url)  # fmt: skip
        try:
            await asyncio.to_thread(gateway.start)
            record = await eventually(
                lambda: next((p for p in hub.proxies_json()["proxies"]
                              if p["id"] == PROXY and p.get("applied_version")), None),
                what="the proxy's report over mTLS",
            )  # fmt: skip
            assert record["state"] == "in sync"
        finally:
            await asyncio.to_thread(gateway.stop)


async def test_clients_without_an_svid_or_of_another_namespace_are_refused(
    tmp_path: Path, pki: MeshPki, load_yaml: Callable[..., Resources]
) -> None:
    hub = ready_hub(load_yaml)
    controller = pki.issue(tmp_path / "controller", "isthmus-system", "isthmus-federation")
    other = pki.issue(tmp_path / "other", "other", "app")
    async with serve_mtls(hub, controller) as url:
        path = f"{url}/v1/snapshots/p1?wait=0s"
        anonymous = mtls_client_context(None, controller.bundle)
        async with httpx.AsyncClient(verify=anonymous) as client:
            r = await client.get(path)
            assert r.status_code == 403 and "an SVID of the mesh is required" in r.json()["error"]
            posted = await client.post(f"{url}/v1/snapshots/p1/status", json={
                "version": "v", "applied": True})  # fmt: skip
            assert posted.status_code == 403
            assert (await client.get(f"{url}/v1/proxies")).status_code == 200  # status is open
        async with httpx.AsyncClient(verify=mtls_client_context(other, other.bundle)) as client:
            r = await client.get(path + "&namespace=default")
            assert r.status_code == 403
            assert "may not read the configuration of namespace 'default'" in r.json()["error"]
            own = await client.get(path + "&namespace=other")
            assert own.status_code == 200 and own.headers["x-isthmus-version"]

        stranger_pki = MeshPki(name="stranger")
        stranger = stranger_pki.issue(tmp_path / "stranger", "default", "app")
        with pytest.raises(httpx.HTTPError):  # a certificate of another root: no handshake
            async with httpx.AsyncClient(
                verify=mtls_client_context(stranger, controller.bundle)
            ) as c:
                await c.get(path)


async def test_a_proxy_refuses_a_controller_outside_its_trust_domain(
    tmp_path: Path, pki: MeshPki, load_yaml: Callable[..., Resources]
) -> None:
    hub = ready_hub(load_yaml)
    impostor = pki.forge(tmp_path / "impostor", ["spiffe://elsewhere.test/ns/x/sa/controller"])
    proxy = pki.issue(tmp_path / "proxy", "default", "isthmus-ingress")
    cached = Snapshot().with_version()
    cache = tmp_path / "cache.json"
    cache.write_bytes(encode(cached))
    credentials = await StaticCredentials(proxy.chain, proxy.key, proxy.bundle).first()
    # The impostor's chain verifies (the same CA signed it); its SPIFFE ID does not fit.
    async with serve_mtls(hub, impostor, checked=False) as url:
        source = ControlPlaneSource(url, "p1", cache_path=cache, wait_s=1)
        source.use_credentials(credentials)
        try:
            assert await asyncio.to_thread(source.load) == cached  # from the cache, not from it
            # It keeps polling, and keeps refusing what the impostor answers, although the
            # impostor has a snapshot for it.
            assert hub.snapshot_for(ProxyInfo(id="p1")) is not None
            assert not await asyncio.to_thread(source.wait_changed, 1.5)
        finally:
            source.close()
