"""Locality: endpoint priorities (Istio), priority loads (Envoy), distribute rules, patterns.

The proxy sits in ``r1/z1/s1`` unless a case says otherwise. Priority tables follow Istio's
locality failover task (0 same subzone, 1 same zone, 2 same region, 3 a failover region,
4 any other region) and its ``failoverPriority`` rules; load tables follow Envoy's priority
level examples (overprovisioning factor 1.4).
"""

from __future__ import annotations

import msgspec
import pytest

from gateway.config.snapshot import LocalityFailover, LocalityLb, LocalityShare, Node
from gateway.upstream.locality import (
    OVERPROVISIONING,
    REGION_LABEL,
    SUBZONE_LABEL,
    ZONE_LABEL,
    Locality,
    distribute_weights,
    locality_string,
    matches,
    node_locality,
    priority,
    priority_loads,
)

NODE = Node(region="r1", zone="z1", subzone="s1")


@pytest.mark.parametrize(
    ("pattern", "loc", "expected"),
    [
        ("r1", ("r1", "z1", "s1"), True),
        ("r1", ("r1", "z2", ""), True),  # missing parts match anything
        ("r1/z1", ("r1", "z1", "s9"), True),
        ("r1/z1/s1", ("r1", "z1", "s1"), True),
        ("r1/z1/s1", ("r1", "z1", "s2"), False),
        ("r1/z2", ("r1", "z1", "s1"), False),
        ("r2", ("r1", "z1", "s1"), False),
        ("*", ("anything", "z", "s"), True),
        ("r1/*", ("r1", "z7", ""), True),
        ("r1/*", ("r2", "z7", ""), False),
        ("*/z1", ("r9", "z1", ""), True),
        ("*/z1", ("r9", "z2", ""), False),
        ("r1/*/s1", ("r1", "z3", "s1"), True),
        ("r1/*/s1", ("r1", "z3", "s2"), False),
    ],
)
def test_matches(pattern: str, loc: Locality, expected: bool) -> None:
    assert matches(pattern, loc) is expected


def test_node_locality_and_its_string() -> None:
    assert node_locality(Node()) == ("", "", "")
    assert node_locality(NODE) == ("r1", "z1", "s1")
    assert locality_string(("r1", "z1", "")) == "r1/z1"
    assert locality_string(("r1", "z1", "s1")) == "r1/z1/s1"


FAILOVER_R1_R2 = (LocalityFailover(from_="r1", to="r2"),)


@pytest.mark.parametrize(
    ("loc", "failover", "expected"),
    [
        (("r1", "z1", "s1"), (), 0),
        (("r1", "z1", "s2"), (), 1),
        (("r1", "z1", ""), (), 1),
        (("r1", "z2", "s1"), (), 2),
        (("r2", "z1", "s1"), (), 3),  # no failover rule: every other region alike
        (("r3", "z1", "s1"), (), 3),
        (("r2", "z9", ""), FAILOVER_R1_R2, 3),  # the failover region comes first
        (("r3", "z9", ""), FAILOVER_R1_R2, 4),
        (("r1", "z2", ""), FAILOVER_R1_R2, 2),  # failover never outranks the own region
        # Rules for another region do not apply to this proxy.
        (("r2", "z1", ""), (LocalityFailover(from_="r9", to="r3"),), 3),
        (("r3", "z1", ""), (LocalityFailover(from_="r9", to="r3"),), 3),
        # The first rule for the proxy's region decides (Istio).
        (
            ("r3", "z1", ""),
            (LocalityFailover(from_="r1", to="r2"), LocalityFailover(from_="r1", to="r3")),
            4,
        ),
    ],
)
def test_priority_by_locality_and_failover(
    loc: Locality, failover: tuple[LocalityFailover, ...], expected: int
) -> None:
    assert priority(loc, {}, NODE, LocalityLb(failover=failover)) == expected


def test_failover_order_is_local_zone_region_failover_region_rest() -> None:
    lb = LocalityLb(failover=FAILOVER_R1_R2)
    locs: list[Locality] = [
        ("r3", "z1", "s1"),
        ("r2", "z1", "s1"),
        ("r1", "z2", "s1"),
        ("r1", "z1", "s2"),
        ("r1", "z1", "s1"),
    ]
    ranked = sorted(locs, key=lambda loc: priority(loc, {}, NODE, lb))
    assert ranked == list(reversed(locs))


NET = "topology.istio.io/network"
PRIO_NODE = Node(region="r1", zone="z1", labels=((NET, "n1"), ("tier", "gold")))


@pytest.mark.parametrize(
    ("keys", "loc", "labels", "expected"),
    [
        # 0 when every label matches, 1 when all but the last, ..., len(keys) when none.
        ((NET, REGION_LABEL, ZONE_LABEL), ("r1", "z1", ""), {NET: "n1"}, 0),
        ((NET, REGION_LABEL, ZONE_LABEL), ("r1", "z2", ""), {NET: "n1"}, 1),
        ((NET, REGION_LABEL, ZONE_LABEL), ("r2", "z1", ""), {NET: "n1"}, 2),
        ((NET, REGION_LABEL, ZONE_LABEL), ("r1", "z1", ""), {NET: "n2"}, 3),
        ((NET, REGION_LABEL, ZONE_LABEL), ("r1", "z1", ""), {}, 3),
        # Only the prefix counts: a later match after a mismatch does not help.
        ((REGION_LABEL, NET), ("r2", "z1", ""), {NET: "n1"}, 2),
        ((NET, "tier"), ("r9", "", ""), {NET: "n1", "tier": "gold"}, 0),
        ((NET, "tier"), ("r9", "", ""), {NET: "n1", "tier": "silver"}, 1),
        # A label neither side has matches (Istio compares empty with empty).
        (("absent",), ("r1", "z1", ""), {}, 0),
        (("absent",), ("r1", "z1", ""), {"absent": "x"}, 1),
        ((SUBZONE_LABEL,), ("r1", "z1", ""), {}, 0),  # the node has no subzone either
        # key=value compares with that value instead of the proxy's (Istio's override).
        ((f"{NET}=n2",), ("r1", "z1", ""), {NET: "n2"}, 0),
        ((f"{NET}=n2",), ("r1", "z1", ""), {NET: "n1"}, 1),
        ((f"{NET}=n2", REGION_LABEL), ("r1", "z9", ""), {NET: "n2"}, 0),
        ((f"{REGION_LABEL}=r2", ZONE_LABEL), ("r2", "z1", ""), {}, 0),
        ((f"{REGION_LABEL}=r2", ZONE_LABEL), ("r1", "z1", ""), {}, 2),
    ],
)
def test_priority_by_failover_priority_labels(
    keys: tuple[str, ...], loc: Locality, labels: dict[str, str], expected: int
) -> None:
    lb = LocalityLb(failover_priority=keys)
    assert priority(loc, labels, PRIO_NODE, lb) == expected


@pytest.mark.parametrize(
    ("loc", "labels", "expected"),
    [
        (("r1", "z1", ""), {NET: "n1"}, 0),
        (("r1", "z2", ""), {NET: "n1"}, 2),
        (("r2", "z1", ""), {NET: "n1"}, 3),
        (("r3", "z1", ""), {NET: "n1"}, 4),
        (("r1", "z1", ""), {NET: "n2"}, 5),  # a worse label level beats any locality
        (("r2", "z1", ""), {NET: "n2"}, 8),
        (("r3", "z1", ""), {NET: "n2"}, 9),
    ],
)
def test_failover_applies_inside_each_failover_priority_level(
    loc: Locality, labels: dict[str, str], expected: int
) -> None:
    lb = LocalityLb(failover_priority=(NET,), failover=FAILOVER_R1_R2)
    assert priority(loc, labels, PRIO_NODE, lb) == expected


@pytest.mark.parametrize(
    ("healthy", "total", "loads"),
    [
        ([3], [3], [1.0]),
        ([1], [2], [1.0]),  # a single level always takes everything it can
        ([0], [3], [0.0]),
        ([4, 4], [4, 4], [1.0, 0.0]),  # all local: nothing leaves
        ([3, 4], [4, 4], [1.0, 0.0]),  # 75% x 1.4 > 100%: still all local
        ([71, 100], [100, 100], [0.994, 0.006]),  # Envoy's 71% example
        ([72, 100], [100, 100], [1.0, 0.0]),
        ([2, 4], [4, 4], [0.7, 0.3]),  # 50% healthy -> 70% of the traffic
        ([1, 4], [4, 4], [0.35, 0.65]),
        ([0, 4], [4, 4], [0.0, 1.0]),
        ([1, 1, 4], [4, 4, 4], [0.35, 0.35, 0.3]),
        ([0, 0, 4], [4, 4, 4], [0.0, 0.0, 1.0]),
        # Short everywhere: scaled up so the loads still add to 1 (normalisation).
        ([1, 1], [4, 4], [0.5, 0.5]),
        ([1, 2], [10, 10], [1 / 3, 2 / 3]),
        ([0, 0], [4, 4], [0.0, 0.0]),  # nothing healthy at all
        ([0, 3], [0, 3], [0.0, 1.0]),  # a level without endpoints gets nothing
        ([], [], []),
    ],
)
def test_priority_loads(healthy: list[int], total: list[int], loads: list[float]) -> None:
    got = priority_loads(healthy, total)
    assert got == pytest.approx(loads)
    if any(healthy):
        assert sum(got) == pytest.approx(1.0)


def test_overprovisioning_factor_is_envoys() -> None:
    assert OVERPROVISIONING == 1.4


def test_priority_loads_refuses_mismatched_lists() -> None:
    with pytest.raises(ValueError):
        priority_loads([1, 2], [3])


DISTRIBUTE = LocalityLb(
    distribute=(
        LocalityShare(from_="r1/z1/*", to=(("r1/z1", 80), ("r1/z2", 20))),
        LocalityShare(from_="r1/*", to=(("r2", 100),)),
        LocalityShare(from_="*", to=(("r3", 100),)),
    )
)


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (NODE, [("r1/z1", 80), ("r1/z2", 20)]),
        (Node(region="r1", zone="z2"), [("r2", 100)]),  # the first matching rule wins
        (Node(region="r9", zone="z1"), [("r3", 100)]),
    ],
)
def test_distribute_weights_takes_the_first_rule_matching_the_proxy(
    node: Node, expected: list[tuple[str, int]]
) -> None:
    assert distribute_weights(DISTRIBUTE, node) == expected


def test_distribute_weights_none_without_a_matching_rule() -> None:
    lb = LocalityLb(distribute=(LocalityShare(from_="r2", to=(("r2", 100),)),))
    assert distribute_weights(lb, NODE) is None
    assert distribute_weights(LocalityLb(), NODE) is None


def test_locality_share_wire_name_is_from() -> None:
    share = msgspec.json.decode(
        b'{"from": "r1/z1", "to": [["r1/z1", 70], ["r1/z2", 30]]}', type=LocalityShare
    )
    assert share.from_ == "r1/z1" and share.to == (("r1/z1", 70), ("r1/z2", 30))
    failover = msgspec.json.decode(b'{"from": "r1", "to": "r2"}', type=LocalityFailover)
    assert failover.from_ == "r1"
    assert b'"from":"r1"' in msgspec.json.encode(failover)
