"""Runtime upstream clusters and the manager that applies snapshots to them.

An :class:`UpstreamCluster` is a snapshot ``Cluster`` brought to life: its endpoint pools and
its balancer. :class:`ClusterManager.apply` diffs a new snapshot against the running set:
an endpoint that stays keeps its pool (and its warm connections); a removed endpoint or
cluster closes its idle connections and lets busy ones finish.

Called by the proxy engine on every snapshot; ``sweep`` runs periodically to expire idle
connections.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.config.snapshot import Cluster, Limits
from gateway.upstream.lb import Balancer, make_balancer
from gateway.upstream.pool import EndpointPool


class UpstreamCluster:
    __slots__ = ("balancer", "config", "name", "pools")

    def __init__(self, config: Cluster, pools: dict[str, EndpointPool]) -> None:
        self.config = config
        self.name = config.name
        self.pools = pools
        healthy = [
            pools[f"{e.address}:{e.port}"]
            for e in config.endpoints
            if e.ready and not e.terminating
        ]
        self.balancer: Balancer = make_balancer(config.lb_policy, healthy)

    def pick(self) -> EndpointPool | None:
        return self.balancer.pick()

    def __repr__(self) -> str:
        return f"<UpstreamCluster {self.name} endpoints={len(self.pools)}>"


class ClusterManager:
    def __init__(self) -> None:
        self.clusters: dict[str, UpstreamCluster] = {}
        self.limits = Limits()

    def get(self, name: str) -> UpstreamCluster | None:
        return self.clusters.get(name)

    def apply(self, clusters: Iterable[Cluster], limits: Limits) -> None:
        self.limits = limits
        old = self.clusters
        new: dict[str, UpstreamCluster] = {}
        kept_pools: set[int] = set()
        for cfg in clusters:
            prev = old.get(cfg.name)
            if prev is not None and prev.config == cfg:
                new[cfg.name] = prev
                kept_pools.update(id(p) for p in prev.pools.values())
                continue
            pools: dict[str, EndpointPool] = {}
            for ep in cfg.endpoints:
                key = f"{ep.address}:{ep.port}"
                if key in pools:
                    continue
                pool = prev.pools.get(key) if prev is not None else None
                if (
                    pool is None
                    or pool.protocol != cfg.protocol
                    or pool.connect_timeout_s != cfg.pool.connect_timeout_s
                ):
                    pool = EndpointPool(
                        ep.address,
                        ep.port,
                        protocol=cfg.protocol,
                        connect_timeout_s=cfg.pool.connect_timeout_s,
                        buffer_bytes=limits.stream_buffer_bytes,
                        max_idle=limits.upstream_max_idle_per_endpoint,
                        zone=ep.zone,
                    )
                pools[key] = pool
                kept_pools.add(id(pool))
            new[cfg.name] = UpstreamCluster(cfg, pools)
        for cluster in old.values():
            for pool in cluster.pools.values():
                if id(pool) not in kept_pools:
                    pool.close()
        self.clusters = new

    def sweep(self, now: float) -> None:
        timeout = self.limits.upstream_idle_timeout_s
        for cluster in self.clusters.values():
            for pool in cluster.pools.values():
                pool.sweep(now, timeout)

    def close(self) -> None:
        for cluster in self.clusters.values():
            for pool in cluster.pools.values():
                pool.close()
