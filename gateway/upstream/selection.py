"""Which endpoints a cluster balances over right now, and with what shares.

A :class:`Selection` is rebuilt whenever the usable set changes (a snapshot, an ejection or
its end, an active health check flipping) and is then read on every request. An endpoint is
*usable* when the EndpointSlice says it is ready and not terminating, and *healthy* when it
is also neither ejected by outlier detection nor failed by the active health check.

- Plain clusters balance over the healthy endpoints.
- Locality-aware clusters split them into priority levels (``gateway.upstream.locality``)
  and draw a level by Envoy's priority loads, or a locality by ``distribute`` weights, then
  balance inside it. Locality-aware balancing is on when the DestinationRule sets
  ``localityLbSetting`` (and does not disable it), or when the proxy knows its own locality
  and the cluster can find endpoints unhealthy (outlier detection or active health checks):
  Istio's default.
- Panic: when fewer than ``minHealthPercent`` of the usable endpoints are healthy, health is
  ignored and every usable endpoint takes traffic (Envoy's healthy panic threshold).

Called by ``gateway.upstream.cluster``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from gateway.config.snapshot import Cluster, LocalityLb, Node
from gateway.upstream.lb import Balancer, make_balancer
from gateway.upstream.locality import (
    Locality,
    distribute_weights,
    matches,
    node_locality,
    priority,
    priority_loads,
)
from gateway.upstream.pool import EndpointPool


def is_healthy(pool: EndpointPool) -> bool:
    return pool.usable and pool.hc_healthy and not pool.ejected_until


class Selection:
    __slots__ = ("_balancers", "_cumulative", "healthy", "panic", "usable")

    def __init__(self, config: Cluster, node: Node, pools: Sequence[EndpointPool]) -> None:
        usable = [p for p in pools if p.usable]
        healthy = [p for p in usable if p.hc_healthy and not p.ejected_until]
        self.usable = len(usable)
        self.healthy = len(healthy)
        min_health = config.outlier.min_health_percent if config.outlier else 0
        self.panic = bool(usable) and len(healthy) * 100 < min_health * len(usable)
        ring = config.consistent_hash.minimum_ring_size if config.consistent_hash else None
        policy = config.lb_policy
        self._balancers: list[Balancer] = []
        self._cumulative: list[float] = []
        lb = _locality_lb(config, node)
        if self.panic:
            self._add(1.0, make_balancer(policy, usable, ring))
            return
        if lb is None:
            self._add(1.0, make_balancer(policy, healthy, ring))
            return
        weights = distribute_weights(lb, node) if lb.distribute else None
        if weights is not None:
            self._distribute(weights, usable, policy, ring)
            return
        levels: dict[int, list[EndpointPool]] = {}
        for p in usable:
            levels.setdefault(priority(p.locality, p.labels, node, lb), []).append(p)
        order = sorted(levels)
        loads = priority_loads(
            [sum(1 for p in levels[k] if is_healthy(p)) for k in order],
            [len(levels[k]) for k in order],
        )
        for k, load in zip(order, loads, strict=True):
            if load > 0:
                hosts = [p for p in levels[k] if is_healthy(p)]
                self._add(load, make_balancer(policy, hosts, ring))

    def _distribute(
        self,
        weights: list[tuple[str, int]],
        usable: list[EndpointPool],
        policy: str,
        ring: int | None,
    ) -> None:
        groups: list[tuple[float, list[EndpointPool]]] = []
        for pattern, weight in weights:
            members = [p for p in usable if matches(pattern, p.locality)]
            hosts = [p for p in members if is_healthy(p)]
            if hosts and weight > 0:
                groups.append((weight * min(1.0, 1.4 * len(hosts) / len(members)), hosts))
        total = sum(w for w, _ in groups)
        for w, hosts in groups:
            self._add(w / total, make_balancer(policy, hosts, ring))

    def _add(self, share: float, balancer: Balancer) -> None:
        before = self._cumulative[-1] if self._cumulative else 0.0
        self._cumulative.append(before + share)
        self._balancers.append(balancer)

    def pick(self, key: int, draw: float) -> EndpointPool | None:
        """``draw`` is uniform in [0, 1): it picks the priority level or locality."""
        balancers = self._balancers
        if len(balancers) == 1:
            return balancers[0].pick(key)
        cumulative = self._cumulative
        for i, edge in enumerate(cumulative):
            if draw < edge:
                return balancers[i].pick(key)
        return balancers[-1].pick(key) if balancers else None


def _locality_lb(config: Cluster, node: Node) -> LocalityLb | None:
    lb = config.locality_lb
    if lb is not None:
        return lb if lb.enabled else None
    if node_locality(node) != ("", "", "") and (config.outlier or config.health_check):
        return LocalityLb()
    return None


def draw() -> float:
    return random.random()


__all__ = ["Locality", "Selection", "draw", "is_healthy"]
