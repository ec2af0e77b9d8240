"""Runtime upstream clusters and the manager that applies snapshots to them.

An :class:`UpstreamCluster` is a snapshot ``Cluster`` brought to life: its endpoint pools,
its circuit breaker, its outlier detector and health checker, and the current
:class:`~gateway.upstream.selection.Selection` that requests are balanced with. Health
events (an ejection, its end, a health check flipping) rebuild the selection; requests only
read it.

:class:`ClusterManager.apply` diffs a new snapshot against the running set: an endpoint that
stays keeps its pool (its warm connections and its health); a removed endpoint or cluster
closes its idle connections and lets busy ones finish. A cluster's circuit breaker survives
snapshots so that what is in flight stays counted.

Called by the proxy engine on every snapshot; ``sweep`` runs periodically to expire idle
connections.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable, Mapping

from gateway.config.snapshot import Cluster, Endpoint, Limits, Node
from gateway.upstream.circuit import CircuitBreaker
from gateway.upstream.health import HealthChecker
from gateway.upstream.outlier import OutlierDetector
from gateway.upstream.pool import EndpointPool
from gateway.upstream.selection import Selection
from gateway.upstream.tls import ClusterTls, endpoint_tls_key


class UpstreamCluster:
    __slots__ = ("_tick", "breaker", "checker", "config", "name", "node", "outlier", "pools",
                 "selection")  # fmt: skip

    def __init__(
        self,
        config: Cluster,
        pools: dict[str, EndpointPool],
        breaker: CircuitBreaker,
        node: Node,
    ) -> None:
        self.config = config
        self.name = config.name
        self.pools = pools
        self.breaker = breaker
        self.node = node
        hosts = list(pools.values())
        self.outlier = OutlierDetector(config.outlier, hosts) if config.outlier else None
        self.checker = (
            HealthChecker(config.health_check, hosts, self.refresh) if config.health_check else None
        )
        self._tick: asyncio.TimerHandle | None = None
        self.selection = Selection(config, node, hosts)

    def start(self) -> None:
        """Start the timers: health checks, and the outlier detection interval."""
        if self.checker is not None:
            self.checker.start()
        if self.outlier is not None and self._tick is None:
            loop = asyncio.get_running_loop()
            self._tick = loop.call_later(self.outlier.config.interval_s, self._on_tick)

    def stop(self) -> None:
        if self.checker is not None:
            self.checker.stop()
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

    def refresh(self) -> None:
        """The usable set changed: rebuild the selection."""
        self.selection = Selection(self.config, self.node, list(self.pools.values()))

    def pick(self, key: int = 0) -> EndpointPool | None:
        return self.selection.pick(key, random.random())

    def report(self, pool: EndpointPool, status: int) -> None:
        """A try's outcome, for outlier detection: an HTTP status, or 0 for a try that got
        no response (connect failure, reset, timeout)."""
        outlier = self.outlier
        if outlier is not None and outlier.report(pool, status, time.monotonic()):
            self.breaker.ejections += 1
            self.refresh()

    def _on_tick(self) -> None:
        outlier = self.outlier
        if outlier is None:
            return
        if outlier.tick(time.monotonic()):
            self.refresh()
        self._tick = asyncio.get_running_loop().call_later(outlier.config.interval_s, self._on_tick)

    def ejected(self) -> int:
        return sum(1 for p in self.pools.values() if p.ejected_until)

    def __repr__(self) -> str:
        return f"<UpstreamCluster {self.name} endpoints={len(self.pools)}>"


class ClusterManager:
    def __init__(self) -> None:
        self.clusters: dict[str, UpstreamCluster] = {}
        self.breakers: dict[str, CircuitBreaker] = {}
        self.limits = Limits()
        self.node = Node()

    def get(self, name: str) -> UpstreamCluster | None:
        return self.clusters.get(name)

    def apply(
        self,
        clusters: Iterable[Cluster],
        limits: Limits,
        node: Node | None = None,
        tls: Mapping[str, ClusterTls] | None = None,
    ) -> None:
        """``tls``: the TLS origination of each cluster that has ``Cluster.tls``
        (``gateway.upstream.tls.build_cluster_tls``); a pool whose TLS settings change is
        replaced, so no connection made under the old settings is reused."""
        tls = tls or {}
        self.limits = limits
        # A new node locality changes every selection: rebuild every cluster.
        force = node is not None and node != self.node
        if node is not None:
            self.node = node
        old = self.clusters
        new: dict[str, UpstreamCluster] = {}
        kept_pools: set[int] = set()
        breakers: dict[str, CircuitBreaker] = {}
        for cfg in clusters:
            prev = old.get(cfg.name)
            breaker = self.breakers.get(cfg.name)
            if breaker is None:
                breaker = CircuitBreaker(cfg.pool)
            breaker.config = cfg.pool
            breakers[cfg.name] = breaker
            if prev is not None and prev.config == cfg and not force:
                new[cfg.name] = prev
                kept_pools.update(id(p) for p in prev.pools.values())
                continue
            pools: dict[str, EndpointPool] = {}
            for ep in cfg.endpoints:
                key = f"{ep.address}:{ep.port}"
                if key in pools:
                    continue
                pool = prev.pools.get(key) if prev is not None else None
                # An endpoint's own TLS settings win over the cluster's.
                want_tls = ep.tls if ep.tls is not None else cfg.tls
                pool_tls = (
                    tls.get(endpoint_tls_key(cfg.name, ep.address, ep.port))
                    if ep.tls is not None
                    else tls.get(cfg.name)
                )
                if (
                    pool is None
                    or (pool.tls.config if pool.tls is not None else None) != want_tls
                    or pool.protocol != cfg.protocol
                    or pool.connect_timeout_s != cfg.pool.connect_timeout_s
                    or pool.max_requests_per_connection != cfg.pool.max_requests_per_connection
                ):
                    pool = EndpointPool(
                        ep.address,
                        ep.port,
                        protocol=cfg.protocol,
                        connect_timeout_s=cfg.pool.connect_timeout_s,
                        buffer_bytes=limits.stream_buffer_bytes,
                        max_idle=limits.upstream_max_idle_per_endpoint,
                        breaker=breaker,
                        max_requests_per_connection=cfg.pool.max_requests_per_connection,
                    )
                else:
                    pool.breaker = breaker
                pool.tls = pool_tls
                if cfg.health_check is None:
                    pool.hc_healthy = True
                if cfg.outlier is None:
                    pool.ejected_until = 0.0
                _describe(pool, ep)
                pools[key] = pool
                kept_pools.add(id(pool))
            if prev is not None:
                prev.stop()
            new[cfg.name] = UpstreamCluster(cfg, pools, breaker, self.node)
        for name, cluster in old.items():
            if new.get(name) is not cluster:
                cluster.stop()
            for pool in cluster.pools.values():
                if id(pool) not in kept_pools:
                    pool.close()
        self.clusters = new
        self.breakers = breakers
        for cluster in new.values():
            cluster.start()

    def sweep(self, now: float) -> None:
        default = self.limits.upstream_idle_timeout_s
        for cluster in self.clusters.values():
            timeout = cluster.config.pool.idle_timeout_s or default
            for pool in cluster.pools.values():
                pool.sweep(now, timeout)

    def close(self) -> None:
        for cluster in self.clusters.values():
            cluster.stop()
            for pool in cluster.pools.values():
                pool.close()


def _describe(pool: EndpointPool, ep: Endpoint) -> None:
    pool.usable = ep.ready and not ep.terminating
    pool.locality = (ep.region or "", ep.zone or "", ep.subzone or "")
    pool.labels = dict(ep.labels)
    pool.workload = ep.workload or ""
