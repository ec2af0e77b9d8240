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
- Panic (Envoy's healthy panic threshold, ``minHealthPercent``): with one priority level,
  when fewer than that share of the usable endpoints are healthy and the overprovisioned
  share is under 100%, health is ignored and every usable endpoint takes traffic. With
  locality levels, panic is per level and only when the levels together cannot take all
  the traffic, so a healthy failover locality is used rather than panicking.

Called by ``gateway.upstream.cluster``.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config.snapshot import Cluster, LocalityLb, Node
from gateway.upstream.lb import Balancer, make_balancer
from gateway.upstream.locality import (
    OVERPROVISIONING,
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
        short = _short(len(healthy), len(usable), min_health)
        self.panic = short and _availability([len(healthy)], [len(usable)]) < 1.0
        ring = config.consistent_hash.minimum_ring_size if config.consistent_hash else None
        policy = config.lb_policy
        self._balancers: list[Balancer] = []
        self._cumulative: list[float] = []
        lb = _locality_lb(config, node)
        weights = distribute_weights(lb, node) if lb is not None and lb.distribute else None
        if lb is None or weights is not None:
            # One priority level: panic when it is short of healthy endpoints.
            if self.panic:
                self._add(1.0, make_balancer(policy, usable, ring))
            elif weights is not None:
                self._distribute(weights, usable, policy, ring)
            else:
                self._add(1.0, make_balancer(policy, healthy, ring))
            return
        levels: dict[int, list[EndpointPool]] = {}
        for p in usable:
            levels.setdefault(priority(p.locality, p.labels, node, lb), []).append(p)
        order = sorted(levels)
        counts = [sum(1 for p in levels[k] if is_healthy(p)) for k in order]
        totals = [len(levels[k]) for k in order]
        loads = priority_loads(counts, totals)
        # Envoy: no panic while the levels together are available enough; otherwise a level
        # short of healthy endpoints uses all of its own, and when every level is short,
        # traffic goes to all endpoints in proportion to the levels' sizes.
        panics = [False] * len(order)
        if _availability(counts, totals) < 1.0:
            panics = [_short(h, t, min_health) for h, t in zip(counts, totals, strict=True)]
            if all(panics):
                loads = [t / sum(totals) for t in totals]
        self.panic = any(p for p, load in zip(panics, loads, strict=True) if load > 0)
        for k, load, panic in zip(order, loads, panics, strict=True):
            if load > 0:
                hosts = levels[k] if panic else [p for p in levels[k] if is_healthy(p)]
                self._add(load, make_balancer(policy, hosts, ring))

    def _distribute(
        self,
        weights: list[tuple[str, int]],
        usable: list[EndpointPool],
        policy: str,
        ring: int | None,
    ) -> None:
        # Istio splits a ``to`` weight between the localities it matches by their size (a
        # locality takes the first entry that matches it); Envoy then scales each locality's
        # weight by its availability (healthy share times 1.4, capped at 1).
        groups: list[tuple[float, list[EndpointPool]]] = []
        claimed: set[int] = set()
        for pattern, weight in weights:
            localities: dict[Locality, list[EndpointPool]] = {}
            for p in usable:
                if id(p) not in claimed and matches(pattern, p.locality):
                    claimed.add(id(p))
                    localities.setdefault(p.locality, []).append(p)
            matched = sum(len(m) for m in localities.values())
            for members in localities.values():
                hosts = [p for p in members if is_healthy(p)]
                if hosts and weight > 0:
                    share = weight * len(members) / matched
                    avail = min(1.0, OVERPROVISIONING * len(hosts) / len(members))
                    groups.append((share * avail, hosts))
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


def _short(healthy: int, total: int, min_health_percent: int) -> bool:
    """Below the panic threshold (``minHealthPercent``); 0 never panics."""
    return total > 0 and healthy * 100 < min_health_percent * total


def _availability(healthy: Sequence[int], total: Sequence[int]) -> float:
    """Envoy's normalised total availability (0..1): each level's healthy share times the
    overprovisioning factor, capped at 1, summed over the levels and capped at 1."""
    shares = (min(1.0, OVERPROVISIONING * h / t) for h, t in zip(healthy, total, strict=True) if t)
    return min(1.0, sum(shares))


def _locality_lb(config: Cluster, node: Node) -> LocalityLb | None:
    lb = config.locality_lb
    if lb is not None:
        return lb if lb.enabled else None
    if node_locality(node) != ("", "", "") and (config.outlier or config.health_check):
        return LocalityLb()
    return None
