"""The engine of one worker: applies snapshots to listeners, routes and clusters.

``apply`` first builds everything that can fail (route tables, TLS contexts, new sockets)
and only then commits, so a snapshot that cannot be applied leaves the running one in place
untouched. Listeners that stay are updated in place; removed ones drain. Requests already
in flight keep the objects of the snapshot they started with.

Called by the worker process (``gateway.process.worker``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config.snapshot import PortBinding, Snapshot
from gateway.filters.chain import build_route_table
from gateway.filters.jwks_fetch import JwksRegistry
from gateway.filters.listener_security import build_listener_security, jwks_uris
from gateway.proxy.context import EngineContext
from gateway.proxy.http import HttpProxy
from gateway.proxy.observe import Observer, build_observer
from gateway.proxy.passthrough import TlsRouter
from gateway.proxy.tasks import Supervisor
from gateway.telemetry.stats import Stats, StatsDump
from gateway.transport.connection import ConnectionTracker
from gateway.transport.listener import PortListener
from gateway.transport.mtls_identity import WorkloadIdentity
from gateway.transport.mtls_listener import MtlsServing
from gateway.transport.passthrough import PassthroughConnection
from gateway.transport.tls import ListenerTLS, SniContexts
from gateway.upstream.cluster import ClusterManager
from gateway.upstream.tls import ClusterTls, build_cluster_tls, endpoint_tls_key
from pki.credentials import Credentials

log = logging.getLogger("isthmus.engine")

_SWEEP_S = 5.0


class ApplyError(Exception):
    """A snapshot that cannot run here (bad regex, bad certificate, port in use)."""


@dataclass(slots=True)
class _Plan:
    binding: PortBinding
    listener: PortListener
    new: bool
    handler: HttpProxy | None
    tls: ListenerTLS | None
    router: TlsRouter | None


class Engine:
    def __init__(self) -> None:
        self.stats = Stats()
        self.supervisor = Supervisor()
        self.clusters = ClusterManager()
        loop = asyncio.get_running_loop()
        self.ctx = EngineContext(
            loop=loop,
            clusters=self.clusters,
            supervisor=self.supervisor,
            stats=self.stats,
            limits=Snapshot().limits,
        )
        self.listeners: dict[tuple[str, int], PortListener] = {}
        self.snapshot: Snapshot | None = None
        self.observer: Observer | None = None
        self.draining = False
        # JWKS key sources for RequestAuthentication, kept fresh in the background.
        self.jwks = JwksRegistry()
        # This proxy's SVID (mTLS listeners, ISTIO_MUTUAL clusters); None until the
        # supervisor sends credentials.
        self.identity: WorkloadIdentity | None = None
        self._sweeper: asyncio.TimerHandle | None = loop.call_later(_SWEEP_S, self._sweep)

    async def apply(self, snap: Snapshot) -> None:
        if self.draining:
            raise ApplyError("draining")
        plans: list[_Plan] = []
        observer = self.observer
        new_observer = False
        try:
            cluster_tls = self._cluster_tls(snap)
            for binding in snap.ports:
                plans.append(self._prepare(binding, snap))
            if self.snapshot is None or snap.telemetry != self.snapshot.telemetry:
                observer = build_observer(snap.telemetry, snap.node)
                new_observer = True
        except Exception as exc:
            for p in plans:
                if p.new:
                    p.listener.stop_accepting()
            raise ApplyError(str(exc)) from exc
        # Commit: nothing below may fail for reasons of the snapshot's content.
        self.ctx.limits = snap.limits
        if new_observer:
            old_observer = self.observer
            self.observer = self.ctx.observer = observer
            if old_observer is not None:
                self.supervisor.spawn(asyncio.to_thread(old_observer.close))
        self.clusters.apply(snap.clusters, snap.limits, snap.node, cluster_tls)
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._sweep()  # and reschedule at the new clusters' pace
        keep: dict[tuple[str, int], PortListener] = {}
        for p in plans:
            key = (p.binding.address, p.binding.port)
            if p.new:
                await p.listener.start()
                old = self.listeners.get(key)
                if old is not None and old is not p.listener:
                    self.supervisor.spawn(old.drain(snap.limits.drain_timeout_s))
            else:
                p.listener.update(
                    p.handler, p.tls, snap.limits, self._passthrough_factory(p.router)
                )
            keep[key] = p.listener
        for key, old in self.listeners.items():
            if key not in keep:
                self.supervisor.spawn(old.drain(snap.limits.drain_timeout_s))
        self.listeners = keep
        self.jwks.retain(uri for b in snap.ports for uri in jwks_uris(b.listeners))
        self.snapshot = snap
        self.stats.gauges["isthmus_listeners"] = float(len(keep))

    def set_credentials(self, credentials: Credentials) -> bool:
        """Use ``credentials`` for mTLS connections made from now on (live ones keep theirs).
        Returns False when they are the ones in use already."""
        if self.identity is None:
            self.identity = WorkloadIdentity(credentials)
            return True
        changed = self.identity.update(credentials)
        if changed:
            log.info("identity %r: new credentials for new connections", self.identity)
        return changed

    def _cluster_tls(self, snap: Snapshot) -> dict[str, ClusterTls]:
        """TLS origination by cluster name, and by ``endpoint_tls_key`` for endpoints that
        carry their own (remote east-west gateways appended to a local cluster)."""
        out: dict[str, ClusterTls] = {}
        for c in snap.clusters:
            try:
                if c.tls is not None:
                    out[c.name] = build_cluster_tls(c.tls, c.protocol, self.identity)
                for ep in c.endpoints:
                    if ep.tls is not None:
                        key = endpoint_tls_key(c.name, ep.address, ep.port)
                        out[key] = build_cluster_tls(ep.tls, c.protocol, self.identity)
            except ValueError as exc:
                raise ApplyError(f"cluster {c.name}: {exc}") from exc
        return out

    def _mtls(self, binding: PortBinding) -> MtlsServing | None:
        if binding.mtls is None:
            return None
        if self.identity is None:
            raise ApplyError(
                f"port {binding.port}: mTLS {binding.mtls} (PeerAuthentication) needs the "
                "proxy's own identity: start it with --cert/--key/--bundle or --ca-url"
            )
        return MtlsServing(self.identity, binding.mtls, self.supervisor.spawn)

    def _prepare(self, binding: PortBinding, snap: Snapshot) -> _Plan:
        handler: HttpProxy | None = None
        tls: ListenerTLS | None = None
        router: TlsRouter | None = None
        mtls = self._mtls(binding)
        if binding.protocol == "TLS":
            router = TlsRouter(binding.listeners, self.clusters)
        else:
            try:
                table = build_route_table(binding.listeners)
                security = build_listener_security(
                    binding.listeners, binding.port, self.jwks.source_for
                )
            except ValueError as exc:
                raise ApplyError(f"port {binding.port}: {exc}") from exc
            handler = HttpProxy(self.ctx, table, security)
            if binding.protocol == "HTTPS":
                pairs = tuple(c for lst in binding.listeners for c in lst.certificates)
                tls = ListenerTLS(SniContexts(pairs))
        key = (binding.address, binding.port)
        existing = self.listeners.get(key)
        if (
            existing is not None
            and existing.protocol == binding.protocol
            and existing.mtls_mode == binding.mtls
        ):
            return _Plan(binding, existing, False, handler, tls, router)
        listener = PortListener(
            binding.address,
            binding.port,
            binding.protocol,
            snap.limits,
            self.stats,
            handler=handler,
            tls=tls,
            make_protocol=self._passthrough_factory(router),
            mtls=mtls,
        )
        try:
            listener.bind()
        except OSError as exc:
            raise ApplyError(f"cannot listen on {binding.address}:{binding.port}: {exc}") from exc
        return _Plan(binding, listener, True, handler, tls, router)

    def _passthrough_factory(
        self, router: TlsRouter | None
    ) -> Callable[[ConnectionTracker], asyncio.Protocol] | None:
        if router is None:
            return None

        def make(tracker: ConnectionTracker) -> PassthroughConnection:
            return PassthroughConnection(tracker, router, self.supervisor.spawn)

        return make

    def collect(self) -> StatsDump:
        """The worker's stats, with each cluster's circuit-breaker and health state."""
        clusters: dict[str, list[float]] = {}
        for name, c in self.clusters.clusters.items():
            b = c.breaker
            pools = c.pools.values()
            clusters[name] = [
                float(b.connections), float(b.pending), float(b.requests), float(b.retries),
                float(b.retries_total), float(b.overflows),
                float(b.ejections), float(c.ejected()),
                float(c.selection.healthy), float(len(pools)),
            ]  # fmt: skip
        self.stats.clusters = clusters
        return self.stats.dump()

    def _sweep(self) -> None:
        self.clusters.sweep(time.monotonic())
        # Often enough for the shortest per-cluster idle timeout (connectionPool.http).
        every = _SWEEP_S
        for c in self.clusters.clusters.values():
            idle = c.config.pool.idle_timeout_s
            if idle is not None:
                every = min(every, max(idle / 2, 0.05))
        self._sweeper = self.ctx.loop.call_later(every, self._sweep)

    async def drain(self, deadline_s: float) -> None:
        """Stop accepting everywhere, finish what is in flight, then close the rest."""
        self.draining = True
        listeners = list(self.listeners.values())
        if listeners:
            await asyncio.gather(*(lst.drain(deadline_s) for lst in listeners))

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for lst in self.listeners.values():
            lst.stop_accepting()
            lst.tracker.abort_all()
            lst.tracker.stop()
        self.clusters.close()
        await self.jwks.aclose()
        await self.supervisor.aclose()
        if self.observer is not None:
            await asyncio.to_thread(self.observer.close)
            self.observer = self.ctx.observer = None
