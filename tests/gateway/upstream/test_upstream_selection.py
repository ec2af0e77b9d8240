"""Selection: which endpoints take traffic, and in what shares, for a given health picture.

Shares are measured, not sampled: ``draw`` walks an even grid over [0, 1) and the balancer
inside each level is round robin, so a 70/30 split shows up as exactly 70/30.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest

from gateway.config.snapshot import (
    Cluster,
    ConsistentHash,
    HealthCheck,
    LocalityFailover,
    LocalityLb,
    LocalityShare,
    Node,
    OutlierDetection,
)
from gateway.upstream.locality import Locality
from gateway.upstream.pool import EndpointPool
from gateway.upstream.selection import Selection, is_healthy

NODE = Node(region="r1", zone="z1")
GRID = 1000


def pool(
    n: int,
    loc: Locality = ("r1", "z1", ""),
    *,
    usable: bool = True,
    hc_healthy: bool = True,
    ejected: bool = False,
) -> EndpointPool:
    p = EndpointPool(f"10.0.0.{n}", 80, protocol="http1", connect_timeout_s=1.0)
    p.locality = loc
    p.usable = usable
    p.hc_healthy = hc_healthy
    p.ejected_until = 1e12 if ejected else 0.0
    return p


def cluster(
    min_health: int = 0,
    locality_lb: LocalityLb | None = None,
    *,
    outlier: bool = True,
    consistent_hash: ConsistentHash | None = None,
    health_check: HealthCheck | None = None,
) -> Cluster:
    return Cluster(
        name="c",
        outlier=OutlierDetection(min_health_percent=min_health) if outlier else None,
        locality_lb=locality_lb,
        consistent_hash=consistent_hash,
        health_check=health_check,
    )


def shares(sel: Selection, rounds: int = 1) -> Counter[str]:
    """How many of ``GRID * rounds`` picks each endpoint got."""
    got: Counter[str] = Counter()
    for _ in range(rounds):
        for i in range(GRID):
            p = sel.pick(0, (i + 0.5) / GRID)
            got[p.key if p is not None else "none"] += 1
    return got


def by_locality(sel: Selection, pools: Sequence[EndpointPool]) -> dict[str, float]:
    where = {p.key: "/".join(x for x in p.locality if x) for p in pools}
    got: Counter[str] = Counter()
    for key, n in shares(sel).items():
        got[where.get(key, key)] += n
    return {k: n / GRID for k, n in got.items()}


@pytest.mark.parametrize(
    ("usable", "hc_healthy", "ejected", "healthy"),
    [
        (True, True, False, True),
        (False, True, False, False),
        (True, False, False, False),
        (True, True, True, False),
        (False, False, True, False),
    ],
)
def test_is_healthy(usable: bool, hc_healthy: bool, ejected: bool, healthy: bool) -> None:
    p = pool(1, usable=usable, hc_healthy=hc_healthy, ejected=ejected)
    assert is_healthy(p) is healthy


def test_plain_cluster_balances_over_healthy_endpoints_only() -> None:
    pools = [
        pool(1),
        pool(2),
        pool(3, usable=False),
        pool(4, hc_healthy=False),
        pool(5, ejected=True),
    ]
    sel = Selection(cluster(outlier=False), Node(), pools)
    assert (sel.usable, sel.healthy, sel.panic) == (4, 2, False)
    assert shares(sel) == {"10.0.0.1:80": 500, "10.0.0.2:80": 500}


def test_no_healthy_endpoint_and_no_panic_threshold_picks_nothing() -> None:
    sel = Selection(cluster(), Node(), [pool(1, ejected=True), pool(2, hc_healthy=False)])
    assert not sel.panic
    assert sel.pick(0, 0.5) is None
    assert Selection(cluster(), Node(), []).pick(0, 0.1) is None


@pytest.mark.parametrize(
    ("min_health", "healthy", "total", "panic"),
    [
        (50, 1, 4, True),  # 25% < 50%: health is ignored
        (50, 2, 4, False),
        (50, 0, 4, True),
        (30, 1, 4, True),
        (20, 1, 4, False),
        (0, 0, 4, False),  # 0 (Istio's default) never panics
        # Envoy: a level whose healthy share x 1.4 reaches 100% is never in panic.
        (80, 3, 4, False),
        (80, 5, 8, True),  # 62.5% x 1.4 = 87.5%
        (100, 9, 10, False),
    ],
)
def test_panic_threshold_on_a_plain_cluster(
    min_health: int, healthy: int, total: int, panic: bool
) -> None:
    pools = [pool(i, ejected=i >= healthy) for i in range(total)]
    pools.append(pool(99, usable=False))
    sel = Selection(cluster(min_health), Node(), pools)
    assert sel.panic is panic
    picked = set(shares(sel))
    if panic:
        assert picked == {p.key for p in pools if p.usable}
    else:
        assert picked == ({p.key for p in pools[:healthy]} or {"none"})


Z1, Z2, R2, R3 = ("r1", "z1", ""), ("r1", "z2", ""), ("r2", "z1", ""), ("r3", "z1", "")
FAILOVER = LocalityLb(failover=(LocalityFailover(from_="r1", to="r3"),))


def mesh(ejected: set[int] = frozenset(), per_locality: int = 2) -> list[EndpointPool]:  # type: ignore[assignment]
    """``per_locality`` endpoints in each of r1/z1, r1/z2, r2/z1 and r3/z1, numbered 0..."""
    pools = []
    for i, loc in enumerate([Z1, Z2, R2, R3] * per_locality):
        pools.append(pool(i, loc, ejected=i in ejected))
    return pools


def ids(loc: Locality, per_locality: int = 2) -> set[int]:
    order = [Z1, Z2, R2, R3]
    return {order.index(loc) + 4 * k for k in range(per_locality)}


@pytest.mark.parametrize(
    ("ejected", "expected"),
    [
        (set(), {"r1/z1": 1.0}),  # all local while local is healthy
        (ids(Z1, 4) - {0}, {"r1/z1": 0.35, "r1/z2": 0.65}),  # 1 of 4 local healthy
        ({0, 4}, {"r1/z1": 0.7, "r1/z2": 0.3}),  # 2 of 4 local healthy
        (ids(Z1, 4), {"r1/z2": 1.0}),  # then the other zone of the region
        (ids(Z1, 4) | ids(Z2, 4), {"r3/z1": 1.0}),  # then the failover region, before r2
        (ids(Z1, 4) | ids(Z2, 4) | ids(R3, 4), {"r2/z1": 1.0}),  # then the rest
    ],
)
def test_locality_failover_order(ejected: set[int], expected: dict[str, float]) -> None:
    pools = mesh(ejected, per_locality=4)
    sel = Selection(cluster(locality_lb=FAILOVER), NODE, pools)
    assert by_locality(sel, pools) == pytest.approx(expected)
    assert not sel.panic


def test_traffic_inside_a_level_goes_to_its_healthy_endpoints_only() -> None:
    pools = mesh({0}, per_locality=4)  # r1/z1: endpoints 0 (ejected), 4, 8, 12
    sel = Selection(cluster(locality_lb=FAILOVER), NODE, pools)
    got = shares(sel)
    assert "10.0.0.0:80" not in got
    assert {k for k in got if got[k] > 0} == {"10.0.0.4:80", "10.0.0.8:80", "10.0.0.12:80"}
    assert by_locality(sel, pools)["r1/z1"] == pytest.approx(1.0)  # 3 of 4 x 1.4 > 100%


def test_a_healthy_failover_level_is_used_instead_of_panicking() -> None:
    # 2 of 3 endpoints are down (below the 50% threshold), but the one that is up can take
    # all the traffic: Envoy does not panic, and neither do we.
    pools = [pool(1, Z1, ejected=True), pool(2, Z1, ejected=True), pool(3, R2)]
    sel = Selection(cluster(50, LocalityLb()), NODE, pools)
    assert not sel.panic
    assert shares(sel) == {"10.0.0.3:80": GRID}


def test_a_level_short_of_healthy_endpoints_panics_when_the_levels_together_are_short() -> None:
    # r1/z1: 1 of 4 healthy (25% < 30%: panic), availability 0.35; r2: 4 of 10 healthy
    # (40%, no panic), availability 0.56. Together 0.91 < 1, so the loads are normalised
    # and r1/z1 spreads its share over all four of its endpoints.
    local = [pool(i, Z1, ejected=i > 0) for i in range(4)]
    remote = [pool(10 + i, R2, ejected=i >= 4) for i in range(10)]
    sel = Selection(cluster(30, LocalityLb()), NODE, local + remote)
    assert sel.panic
    got = shares(sel, rounds=4)
    local_keys = {p.key for p in local}
    assert {k for k in got if k in local_keys} == local_keys
    assert sum(got[k] for k in local_keys) / (4 * GRID) == pytest.approx(0.35 / 0.91, abs=0.01)
    remote_picked = {k for k in got if k not in local_keys}
    assert remote_picked == {p.key for p in remote[:4]}


def test_every_level_short_means_total_panic_by_level_size() -> None:
    local = [pool(i, Z1, ejected=True) for i in range(2)]
    remote = [pool(10 + i, R2, ejected=i > 0) for i in range(6)]  # 1 of 6 healthy
    sel = Selection(cluster(50, LocalityLb()), NODE, local + remote)
    assert sel.panic
    got = by_locality(sel, local + remote)
    assert got == pytest.approx({"r1/z1": 0.25, "r2/z1": 0.75})
    assert set(shares(sel, rounds=2)) == {p.key for p in local + remote}


def test_nothing_healthy_and_no_threshold_picks_nothing_with_localities() -> None:
    pools = [pool(1, Z1, ejected=True), pool(2, R2, ejected=True)]
    sel = Selection(cluster(0, LocalityLb()), NODE, pools)
    assert not sel.panic
    assert sel.pick(0, 0.3) is None


@pytest.mark.parametrize(
    ("config", "node", "local_only"),
    [
        # Istio's default: locality-aware when the proxy knows where it is and the cluster
        # can find endpoints unhealthy.
        (cluster(), NODE, True),
        (cluster(outlier=False, health_check=HealthCheck()), NODE, True),
        (cluster(outlier=False), NODE, False),  # nothing can fail over: plain balancing
        (cluster(), Node(), False),  # the proxy's locality is unknown
        (cluster(locality_lb=LocalityLb(enabled=False)), NODE, False),
        (cluster(outlier=False, locality_lb=LocalityLb()), NODE, True),
    ],
)
def test_when_locality_aware_balancing_is_on(config: Cluster, node: Node, local_only: bool) -> None:
    pools = [pool(1, Z1), pool(2, R2)]
    got = by_locality(Selection(config, node, pools), pools)
    assert got == ({"r1/z1": 1.0} if local_only else {"r1/z1": 0.5, "r2/z1": 0.5})


def distribute(*to: tuple[str, int], source: str = "r1/z1/*") -> LocalityLb:
    return LocalityLb(distribute=(LocalityShare(from_=source, to=tuple(sorted(to))),))


@pytest.mark.parametrize(
    ("lb", "ejected", "expected"),
    [
        (distribute(("r1/z1", 80), ("r1/z2", 20)), set(), {"r1/z1": 0.8, "r1/z2": 0.2}),
        (distribute(("r1/z1", 50), ("r2", 50)), set(), {"r1/z1": 0.5, "r2/z1": 0.5}),
        # Localities left out of the rule get nothing.
        (distribute(("r3", 100)), set(), {"r3/z1": 1.0}),
        # A locality's weight is scaled by its availability: 1 of 2 healthy -> 0.7.
        (distribute(("r1/z1", 80), ("r1/z2", 20)), {0}, {"r1/z1": 56 / 76, "r1/z2": 20 / 76}),
        (distribute(("r1/z1", 80), ("r1/z2", 20)), {0, 4}, {"r1/z2": 1.0}),
        # A wildcard splits its weight between the localities it matches, by size.
        (distribute(("r1/*", 50), ("r2", 50)), set(), {"r1/z1": 0.25, "r1/z2": 0.25, "r2/z1": 0.5}),
        (
            distribute(("r1/*", 50), ("r2", 50)),
            {0, 4},
            {"r1/z2": 0.25 / 0.75, "r2/z1": 0.5 / 0.75},
        ),
        # A locality belongs to the first entry that matches it.
        (
            distribute(("*", 50), ("r2", 50)),
            set(),
            {"r1/z1": 0.25, "r1/z2": 0.25, "r2/z1": 0.25, "r3/z1": 0.25},
        ),
        # No rule for this proxy: priorities as usual.
        (distribute(("r2", 100), source="r9"), set(), {"r1/z1": 1.0}),
    ],
)
def test_distribute(lb: LocalityLb, ejected: set[int], expected: dict[str, float]) -> None:
    pools = mesh(ejected)
    sel = Selection(cluster(locality_lb=lb), NODE, pools)
    assert by_locality(sel, pools) == pytest.approx(expected, abs=0.002)


def test_distribute_with_nothing_healthy_in_its_localities_picks_nothing() -> None:
    pools = mesh(ids(R3))
    sel = Selection(cluster(locality_lb=distribute(("r3", 100))), NODE, pools)
    assert sel.pick(0, 0.5) is None


def test_distribute_panics_as_one_level() -> None:
    pools = mesh(ids(Z1) | ids(Z2) | ids(R2))  # only r3 healthy: 2 of 8 = 25%
    sel = Selection(cluster(50, distribute(("r1/z1", 100))), NODE, pools)
    assert sel.panic
    assert set(shares(sel, rounds=2)) == {p.key for p in pools}


def test_consistent_hash_keeps_a_key_on_one_endpoint_inside_the_local_level() -> None:
    pools = mesh()
    config = cluster(locality_lb=LocalityLb(), consistent_hash=ConsistentHash(header="x-user"))
    sel = Selection(config, NODE, pools)
    local = {p.key for p in pools if p.locality == Z1}
    for key in (1, 2**40, 2**63 + 5):
        picks = {sel.pick(key, i / 10).key for i in range(10)}  # type: ignore[union-attr]
        assert len(picks) == 1 and picks <= local
