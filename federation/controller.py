"""The federation controller of one cluster: sources, Consul sync and the snapshot server.

:class:`Controller` wires the parts of ``federation/`` together (DESIGN.md §5):

1. a source (Kubernetes through the official client, or a directory of YAML) fills the
   :class:`~federation.sources.store.ObjectStore`;
2. :class:`~federation.consul.ConsulSync` exports :func:`~federation.exports.local_exports`
   under the cluster's own Consul node (leader only, never before the store is synced) and
   imports every other cluster's exports;
3. the :class:`~federation.snapshots.hub.SnapshotHub` recompiles every proxy's snapshot when
   the store or the imports change (debounced) and the snapshot server pushes them.

The HTTP side is one Starlette app on ``--listen``: the snapshot API, ``/metrics`` and
``/ready`` (ready once the sources have synced). Called by ``isthmus federation run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from federation.consul import ConsulSync, SyncSettings
from federation.exports import local_exports
from federation.metrics import render_metrics
from federation.peer import serve_tls
from federation.snapshots.hub import SnapshotHub
from federation.snapshots.server import build_app
from federation.sources.directory import DirectorySource
from federation.sources.kinds import SERVICE_EXPORT
from federation.sources.kube import KubeSource
from federation.sources.kube_client import api_client
from federation.sources.store import ObjectStore
from gateway.process.gc_tuning import tune_for_large_state

log = logging.getLogger("isthmus.federation")


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    cluster: str
    catalog: str  # the Consul (or embedded catalog) HTTP address
    source_dir: str | None = None
    kubeconfig: str | None = None
    in_cluster: bool = False
    listen: tuple[str, int] = ("127.0.0.1", 15010)
    gateway_address: str = "127.0.0.1"  # this cluster's east-west gateway
    gateway_port: int = 15443
    trust_domain: str = "cluster.local"
    locality: str = ""
    sync: SyncSettings = field(default_factory=SyncSettings)
    replica_id: str | None = None
    # (cert, key, bundle) PEM files: serve the HTTP side over mTLS (federation.peer).
    tls_files: tuple[str, str, str] | None = None


class _UvicornServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the command owns the signals
        pass


class Controller:
    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        self.store = ObjectStore()
        self.hub = SnapshotHub(
            config.cluster, gateway_port=config.gateway_port, trust_domain=config.trust_domain
        )
        self.sync = ConsulSync(
            config.catalog,
            cluster=config.cluster,
            gateway_address=config.gateway_address,
            gateway_port=config.gateway_port,
            trust_domain=config.trust_domain,
            locality=config.locality,
            exports=lambda: local_exports(self.store),
            synced=self.store.synced,
            settings=config.sync,
            replica_id=config.replica_id,
        )
        self.source: DirectorySource | KubeSource
        if config.source_dir is not None:
            self.source = DirectorySource(self.store, config.source_dir)
        else:
            api = api_client(config.kubeconfig, in_cluster=config.in_cluster)
            self.source = KubeSource(self.store, api)
        self.updates = 0  # hub updates fed

    # -- HTTP ---------------------------------------------------------------------------------

    def app(self) -> Starlette:
        async def metrics(request: Request) -> Response:
            return Response(render_metrics(self), media_type="text/plain; version=0.0.4")

        async def ready(request: Request) -> Response:
            if self.store.synced.is_set():
                return PlainTextResponse("ready\n")
            pending = ", ".join(self.store.pending()) or "sources"
            return PlainTextResponse(f"waiting for {pending}\n", status_code=503)

        return Starlette(
            routes=[
                Route("/metrics", metrics),
                Route("/ready", ready),
                Mount("/", app=build_app(self.hub, require_peer=self.config.tls_files is not None)),
            ]
        )

    # -- running ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        host, port = self.config.listen
        config = uvicorn.Config(
            self.app(), host=host, port=port, log_level="warning", access_log=False,
            lifespan="off",
        )  # fmt: skip
        follow_tls = await self._serve_tls(config)
        server = _UvicornServer(config)
        log.info(
            "federation controller starting",
            extra={"cluster": self.config.cluster, "listen": f"{host}:{port}",
                   "catalog": self.config.catalog,
                   "tls": "mtls" if follow_tls is not None else "plain"},
        )  # fmt: skip
        self.source.start()
        tasks = [
            asyncio.create_task(self.sync.run(), name="consul-sync"),
            asyncio.create_task(self._feed(), name="feed"),
            asyncio.create_task(server.serve(), name="http"),
        ]
        if follow_tls is not None:
            tasks.append(asyncio.create_task(follow_tls, name="tls-credentials"))
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is stopper:
                    continue
                exc = t.exception()
                if exc is not None:
                    # Say what really failed: every leaf of a TaskGroup's exception group,
                    # each with its traceback, before the command prints its one line.
                    for leaf in leaves(exc):
                        log.error(
                            "controller task %s failed: %s: %s",
                            t.get_name(),
                            type(leaf).__name__,
                            leaf,
                            exc_info=leaf,
                            extra={"cluster": self.config.cluster},
                        )
                    raise exc
                log.error("controller task %s ended by itself", t.get_name(),
                          extra={"cluster": self.config.cluster})  # fmt: skip
        finally:
            log.info("federation controller stopping", extra={"cluster": self.config.cluster})
            server.should_exit = True
            await self.hub.aclose()
            for t in [*tasks, stopper]:
                if t.get_name() != "http":
                    t.cancel()
            await asyncio.gather(*tasks, stopper, return_exceptions=True)
            await self.source.stop()

    async def _serve_tls(self, config: uvicorn.Config) -> Coroutine[Any, Any, None] | None:
        """With ``tls_files``: load them (raising a clear error when they do not check out),
        make ``config`` serve mTLS, and return the coroutine that follows file changes."""
        if self.config.tls_files is None:
            return None
        # Imported here: the PKI modules load cryptography's x509 (~50 ms), for mTLS only.
        from gateway.process.credentials import CredentialsRefused, StaticCredentials
        from pki.credentials import Credentials
        from pki.tls_context import TlsContexts

        cert, key, bundle = (Path(p) for p in self.config.tls_files)
        files = StaticCredentials(cert, key, bundle)
        try:
            credentials = await files.first()
        except CredentialsRefused as exc:
            raise ValueError(f"--cert/--key/--bundle: {exc}") from None
        if not credentials.spiffe_id.member_of(self.config.trust_domain):
            raise ValueError(f"--cert: {credentials.spiffe_id} is not in trust domain "
                             f"{self.config.trust_domain}")  # fmt: skip
        contexts = TlsContexts(
            credentials, require_client_cert=False, optional_client_cert=True,
            alpn=("http/1.1",),
        )  # fmt: skip
        serve_tls(config, contexts, self.config.trust_domain)

        async def push(new: Credentials) -> str:
            contexts.update(new)
            return ""

        return files.follow(push)

    async def _feed(self) -> None:
        """Hand the hub new inputs whenever the store or the imports change, and tell the
        exporter about local changes. The first snapshot waits for the sources' first full
        list, so that no proxy ever sees a half-read cluster."""
        await self.store.synced.wait()
        # Everything read so far (modules, the first full list) lives as long as the
        # process: moved out of the cycle collector's reach, a full collection walks only
        # what changes afterwards instead of the whole cluster again.
        gc.freeze()
        log.info("sources synced", extra={"cluster": self.config.cluster,
                                          "store_version": self.store.version})  # fmt: skip
        store_v = self.store.version
        import_v = self.sync.version
        self.sync.notify()
        self._update()
        while True:
            waits = {
                asyncio.create_task(self.store.wait_changed(store_v)): "store",
                asyncio.create_task(self.sync.wait_changed(import_v)): "imports",
            }
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in waits:
                    t.cancel()
            if self.store.version != store_v:
                store_v = self.store.version
                self.sync.notify()
            import_v = self.sync.version
            self._update()

    def _update(self) -> None:
        self.updates += 1
        self.hub.update(self.store.resources(), self.sync.imports, self.store.items(SERVICE_EXPORT))

    def status(self) -> dict[str, Any]:
        return {
            "cluster": self.config.cluster,
            "synced": self.store.synced.is_set(),
            "leader": self.sync.is_leader,
            "imports": len(self.sync.imports),
        }


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``, exception groups flattened (``exc`` itself if none)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


async def run_until_signalled(config: ControllerConfig) -> int:
    import signal

    tune_for_large_state()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    controller = Controller(config)
    await controller.run(stop)
    return 0
