"""Snapshot deltas (``gateway.config.delta``): diff, apply, and the checks that refuse a
delta that does not rebuild the version it names."""

from __future__ import annotations

import random

import msgspec
import pytest

from gateway.config.delta import (
    DeltaMismatch,
    Indexed,
    SnapshotDelta,
    apply,
    decode_delta,
    diff,
    encode_delta,
)
from gateway.config.snapshot import Cluster, Endpoint, Limits, Snapshot


def cluster(name: str, *addresses: str) -> Cluster:
    return Cluster(name=name, endpoints=tuple(Endpoint(address=a, port=80) for a in addresses))


def snap(*clusters: Cluster, limits: Limits | None = None) -> Snapshot:
    return Snapshot(clusters=clusters, limits=limits or Limits()).with_version()


def test_the_version_ignores_cluster_order_and_sees_every_cluster() -> None:
    a, b = cluster("ns/a:80", "10.0.0.1"), cluster("ns/b:80", "10.0.0.2")
    assert snap(a, b).version == snap(b, a).version
    assert snap(a, b).version != snap(a).version
    assert snap(a, b).version != snap(a, cluster("ns/b:80", "10.0.0.3")).version
    assert snap(a).version != snap(a, limits=Limits(max_header_bytes=1024)).version


def test_a_delta_carries_only_what_changed_and_rebuilds_the_new_snapshot() -> None:
    kept = [cluster(f"ns/s{i}:80", f"10.0.0.{i}") for i in range(50)]
    old = Indexed.versioned(snap(*kept, cluster("ns/gone:80", "10.1.0.1")))
    new_snapshot = snap(
        *kept[:10], cluster("ns/s10:80", "10.9.9.9"), *kept[11:], cluster("ns/new:80", "10.2.0.1"),
        limits=Limits(max_header_bytes=4096),
    )  # fmt: skip
    new = Indexed.versioned(new_snapshot, old)
    assert new.version == new_snapshot.version  # the same content version as a full compile

    delta = diff(old, new)
    assert delta.base == old.version and delta.version == new.version
    assert sorted(c.name for c in delta.clusters) == ["ns/new:80", "ns/s10:80"]
    assert delta.removed == ("ns/gone:80",)
    assert delta.head.clusters == () and delta.head.limits.max_header_bytes == 4096

    rebuilt = apply(Indexed(old.snapshot), decode_delta(encode_delta(delta)))
    assert rebuilt.version == new.version
    assert rebuilt.snapshot.cluster_map() == new_snapshot.cluster_map()
    assert rebuilt.snapshot.limits == new_snapshot.limits
    assert sorted(c.name for c in rebuilt.snapshot.clusters) == sorted(new.clusters)
    assert len(rebuilt.snapshot.clusters) == len(new_snapshot.clusters)


def test_versioned_shares_the_unchanged_clusters_with_the_previous_snapshot() -> None:
    a, b = cluster("ns/a:80", "10.0.0.1"), cluster("ns/b:80", "10.0.0.2")
    old = Indexed.versioned(snap(a, b))
    # A fresh compilation builds equal but distinct objects.
    again = msgspec.json.decode(msgspec.json.encode(snap(a, cluster("ns/b:80", "10.0.0.3"))),
                                type=Snapshot)  # fmt: skip
    new = Indexed.versioned(again, old)
    assert new.clusters["ns/a:80"] is old.clusters["ns/a:80"]
    assert new.clusters["ns/b:80"] is not old.clusters["ns/b:80"]


def test_a_delta_from_another_base_is_refused() -> None:
    one = Indexed.versioned(snap(cluster("ns/a:80", "10.0.0.1")))
    two = Indexed.versioned(snap(cluster("ns/a:80", "10.0.0.2")))
    three = Indexed.versioned(snap(cluster("ns/a:80", "10.0.0.3")))
    with pytest.raises(DeltaMismatch, match="does not apply"):
        apply(one, diff(two, three))


def test_a_delta_that_does_not_give_its_version_is_refused() -> None:
    old = Indexed.versioned(snap(cluster("ns/a:80", "10.0.0.1"), cluster("ns/b:80", "10.0.0.2")))
    new = Indexed.versioned(snap(cluster("ns/a:80", "10.0.0.9"), cluster("ns/b:80", "10.0.0.2")))
    delta = diff(old, new)
    tampered = msgspec.structs.replace(delta, clusters=(cluster("ns/a:80", "10.6.6.6"),))
    with pytest.raises(DeltaMismatch, match="gives content version"):
        apply(old, tampered)
    missing = msgspec.structs.replace(delta, removed=("ns/never:80",))
    with pytest.raises(DeltaMismatch, match="lacks"):
        apply(old, missing)
    # The snapshot held is untouched by the refused deltas.
    assert apply(old, delta).version == new.version
    assert old.clusters["ns/a:80"].endpoints[0].address == "10.0.0.1"


def test_unknown_fields_in_a_delta_are_refused() -> None:
    old = Indexed.versioned(snap(cluster("ns/a:80", "10.0.0.1")))
    body = msgspec.json.decode(encode_delta(diff(old, old)))
    body["extra"] = 1
    with pytest.raises(msgspec.ValidationError, match="extra"):
        decode_delta(msgspec.json.encode(body))
    assert isinstance(decode_delta(encode_delta(diff(old, old))), SnapshotDelta)


def test_a_chain_of_deltas_keeps_the_version_of_a_full_compile() -> None:
    # Each step adds, changes and removes clusters; the version a proxy computes by applying
    # the deltas one after the other (the digests added and taken out of the running sum)
    # must stay the one the controller computes from the whole snapshot.
    rng = random.Random(7)
    live = {f"ns/s{i}:80": cluster(f"ns/s{i}:80", f"10.0.0.{i}") for i in range(40)}
    held = Indexed(snap(*live.values()))
    controller = Indexed.versioned(snap(*live.values()))
    for step in range(30):
        for name in rng.sample(sorted(live), 3):
            del live[name]
        for name in rng.sample(sorted(live), 3):
            live[name] = cluster(name, f"10.{step}.{rng.randrange(256)}.1")
        for i in range(3):
            name = f"ns/new{step}-{i}:80"
            live[name] = cluster(name, "10.9.0.1")
        shuffled = list(live.values())
        rng.shuffle(shuffled)
        full = snap(*shuffled)
        new = Indexed.versioned(full, controller)
        assert new.version == full.version
        held = apply(held, decode_delta(encode_delta(diff(controller, new))))
        assert held.version == full.version
        assert held.snapshot.cluster_map() == live
        controller = new
