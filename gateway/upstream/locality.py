"""Locality-aware balancing, sans-IO: endpoint priorities and the share of traffic each gets.

An endpoint's priority says how far it is from the proxy (``Node``), as Istio computes it:

- without ``failoverPriority``: 0 same region, zone and subzone; 1 same region and zone;
  2 same region; then the regions named by a ``failover`` rule for the proxy's region; then
  every other region;
- with ``failoverPriority`` (a list of labels): 0 when the endpoint matches the proxy on all
  of them, 1 when on all but the last, and so on. ``topology.kubernetes.io/region``,
  ``topology.kubernetes.io/zone`` and ``topology.istio.io/subzone`` compare localities; other
  labels compare the endpoint's labels with the node's. An entry ``key=value`` compares the
  endpoint with that value instead of the proxy's. With ``failover`` set as well, the
  locality order above applies inside each of these levels (Istio's ``level * 5 + p``).

:func:`priority_loads` then splits traffic between priorities the way Envoy does: each level
is worth its healthy share times 1.4 (the overprovisioning factor), capped at 100%, and takes
what the levels before it left. So traffic stays local while enough local endpoints are
healthy and moves down the failover order as they fail.

``distribute`` instead sends traffic from the proxy's locality to other localities by
weight (:func:`distribute_weights`).

Called by ``gateway.upstream.selection``.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from gateway.config.snapshot import LocalityLb, Node

OVERPROVISIONING = 1.4
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"

Locality = tuple[str, str, str]  # region, zone, subzone ("" when unknown)


def node_locality(node: Node) -> Locality:
    return (node.region or "", node.zone or "", node.subzone or "")


def locality_string(loc: Locality) -> str:
    return "/".join(loc).rstrip("/")


def matches(pattern: str, loc: Locality) -> bool:
    """Istio locality patterns: ``region/zone/subzone`` with ``*`` in any part; missing
    parts match anything."""
    parts = pattern.split("/")
    return all(fnmatchcase(value, p) for p, value in zip(parts, loc, strict=False))


def priority(
    loc: Locality,
    labels: dict[str, str],
    node: Node,
    lb: LocalityLb,
) -> int:
    here = node_locality(node)
    if lb.failover_priority:
        node_labels = dict(node.labels)
        keys = lb.failover_priority
        level = len(keys)
        for n in range(len(keys), 0, -1):
            if all(_same(k, loc, labels, here, node_labels) for k in keys[:n]):
                level = len(keys) - n
                break
        if not lb.failover:
            return level
        # Istio applies ``failover`` inside each failoverPriority level (at most 5 steps).
        return level * 5 + _locality_priority(loc, here, lb)
    return _locality_priority(loc, here, lb)


def _locality_priority(loc: Locality, here: Locality, lb: LocalityLb) -> int:
    region, zone, subzone = loc
    if region == here[0]:
        if zone == here[1]:
            return 0 if subzone == here[2] else 1
        return 2
    for rule in lb.failover:
        if rule.from_ == here[0]:
            return 3 if region == rule.to else 4
    return 3


def _same(
    entry: str,
    loc: Locality,
    labels: dict[str, str],
    here: Locality,
    node_labels: dict[str, str],
) -> bool:
    """One ``failoverPriority`` entry: ``key`` compares the endpoint with the proxy,
    ``key=value`` compares the endpoint with that value (Istio's override)."""
    key, eq, value = entry.partition("=")
    wanted = (value or None) if eq else _label(key, here, node_labels)
    return _label(key, loc, labels) == wanted


def _label(key: str, loc: Locality, labels: dict[str, str]) -> str | None:
    if key == REGION_LABEL:
        return loc[0] or None
    if key == ZONE_LABEL:
        return loc[1] or None
    if key == SUBZONE_LABEL:
        return loc[2] or None
    return labels.get(key) or None


def priority_loads(healthy: Sequence[int], total: Sequence[int]) -> list[float]:
    """The share (0..1) of traffic for each priority level, from its healthy and total
    endpoint counts. Levels with no endpoints get 0. When every level is short, the loads
    are scaled up so that they still add to 1 (Envoy's normalisation); when no endpoint is
    healthy anywhere every load is 0."""
    health = [
        min(1.0, OVERPROVISIONING * h / t) if t else 0.0
        for h, t in zip(healthy, total, strict=True)
    ]
    loads = []
    left = 1.0
    for h in health:
        take = min(left, h)
        loads.append(take)
        left -= take
    s = sum(loads)
    if 0.0 < s < 1.0:
        loads = [x / s for x in loads]
    return loads


def distribute_weights(lb: LocalityLb, node: Node) -> list[tuple[str, int]] | None:
    """The ``to`` weights of the first ``distribute`` rule whose ``from`` matches the
    proxy's locality, or None."""
    here = node_locality(node)
    for rule in lb.distribute:
        if matches(rule.from_, here):
            return list(rule.to)
    return None
