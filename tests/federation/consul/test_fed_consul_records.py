"""The sans-IO cores of Consul sync: the node diff, entry parsing, index rules, liveness."""

from __future__ import annotations

import random

import pytest

from federation.consul.api import client_factory
from federation.consul.blocking import Backoff, Pacer, changed, next_index, parse_index
from federation.consul.liveness import Liveness
from federation.consul.records import (
    EXPORT_TAG,
    HEARTBEAT_SERVICE,
    Beat,
    ClusterIdentity,
    beats_from_entries,
    desired_services,
    heartbeat_check,
    heartbeat_registration,
    imported_from_entry,
    parse_ports,
    plan,
    service_registration,
)
from federation.consul.settings import SyncSettings
from federation.model import META_EXPORT_TO, META_PORTS, META_READY, ExportedService, ServicePort

IDENT = ClusterIdentity("east", "10.0.0.5", 15443, "east.local", "r1/z1")


def exp(
    name: str, ns: str = "default", ready: int = 2, to: tuple[str, ...] = ()
) -> ExportedService:
    return ExportedService(
        namespace=ns,
        name=name,
        ports=(ServicePort(name="http", port=80, app_protocol="http"),),
        ready_endpoints=ready,
        export_to=to,
    )


def node_of(*regs: dict[str, object], address: str = "10.0.0.5") -> dict[str, object]:
    return {
        "Node": {"Node": "isthmus-east", "Address": address},
        "Services": {r["ID"]: {**r, "Weights": {"Passing": 1}, "ModifyIndex": 7} for r in regs},
    }


def test_registration_carries_the_model_meta() -> None:
    reg = service_registration(exp("web", ready=3, to=("west",)), IDENT)
    assert reg["ID"] == reg["Service"] == "web-default"
    assert reg["Tags"] == [EXPORT_TAG]
    assert (reg["Address"], reg["Port"]) == ("10.0.0.5", 15443)
    meta = reg["Meta"]
    assert meta["isthmus-cluster"] == "east"
    assert meta["isthmus-namespace"] == "default" and meta["isthmus-name"] == "web"
    assert parse_ports(meta[META_PORTS]) == (
        ServicePort(name="http", port=80, app_protocol="http"),
    )
    assert meta[META_READY] == "3" and meta[META_EXPORT_TO] == "west"
    assert meta["isthmus-trust-domain"] == "east.local" and meta["isthmus-locality"] == "r1/z1"
    assert META_EXPORT_TO not in service_registration(exp("web"), IDENT)["Meta"]


def test_plan_writes_nothing_when_the_node_matches() -> None:
    desired, _ = desired_services([exp("a"), exp("b")], IDENT, 30)
    todo = plan(desired, node_of(*desired.values()), IDENT, synced=True)
    assert todo.empty and todo.held_back == 0


def test_plan_repairs_deleted_and_edited_entries_and_removes_strays() -> None:
    desired, _ = desired_services([exp("a"), exp("b")], IDENT, 30)
    edited = {**desired["a-default"], "Meta": {**desired["a-default"]["Meta"], META_READY: "99"}}
    stray = service_registration(exp("gone"), IDENT)
    todo = plan(desired, node_of(edited, desired[HEARTBEAT_SERVICE], stray), IDENT, synced=True)
    assert sorted(r["ID"] for r in todo.register) == ["a-default", "b-default"]
    assert todo.deregister == ["gone-default"]


def test_plan_before_synced_only_adds() -> None:
    desired, _ = desired_services([exp("a"), exp("new")], IDENT, 30)
    edited = {**desired["a-default"], "Port": 1}
    stray = service_registration(exp("gone"), IDENT)
    todo = plan(desired, node_of(edited, stray), IDENT, synced=False)
    assert sorted(r["ID"] for r in todo.register) == [HEARTBEAT_SERVICE, "new-default"]
    assert todo.deregister == []
    assert todo.held_back == 2
    # An empty exports list before synced removes nothing either.
    empty, _ = desired_services([], IDENT, 30)
    assert plan(empty, node_of(desired["a-default"], stray), IDENT, synced=False).deregister == []


def test_plan_rewrites_everything_when_the_gateway_moves() -> None:
    desired, _ = desired_services([exp("a")], IDENT, 30)
    moved = ClusterIdentity("east", "10.9.9.9", 15443, "east.local", "r1/z1")
    desired_moved, _ = desired_services([exp("a")], moved, 30)
    todo = plan(desired_moved, node_of(*desired.values()), moved, synced=True)
    assert len(todo.register) == 2


def test_colliding_consul_names_keep_the_first_and_say_so() -> None:
    desired, problems = desired_services([exp("a", "b-c"), exp("a-b", "c")], IDENT, 30)
    assert [r["Meta"]["isthmus-namespace"] for r in desired.values() if r["ID"] == "a-b-c"] == [
        "b-c"
    ]
    assert len(problems) == 1 and "a-b-c" in problems[0] and "c/a-b" in problems[0]


def entry(
    meta: dict[str, str],
    *,
    address: str = "",
    port: int = 15443,
    checks: list[dict[str, str]] | None = None,
) -> dict[str, object]:
    return {
        "Node": {"Node": "isthmus-west", "Address": "10.1.1.1"},
        "Service": {
            "ID": "web-default",
            "Service": "web-default",
            "Address": address,
            "Port": port,
            "Meta": meta,
        },
        "Checks": checks or [],
    }


WEST = ClusterIdentity("west", "10.1.1.1", 15443, "west.local", "r2/z1")


def test_entries_become_imports_and_filter_own_cluster_and_export_to() -> None:
    meta = service_registration(exp("web", ready=4), WEST)["Meta"]
    key, imp = imported_from_entry(entry(meta), "east") or (None, None)
    assert key == ("west", "default", "web")
    assert imp is not None
    assert (imp.gateway_address, imp.gateway_port, imp.ready_endpoints) == ("10.1.1.1", 15443, 4)
    assert imp.trust_domain == "west.local" and imp.locality == "r2/z1" and imp.healthy
    assert imported_from_entry(entry(meta), "west") is None  # our own
    limited = service_registration(exp("web", to=("north", "south")), WEST)["Meta"]
    assert imported_from_entry(entry(limited), "east") is None
    assert imported_from_entry(entry(limited), "south") is not None
    assert imported_from_entry(entry({}), "east") is None  # not an isthmus export
    critical = entry(meta, checks=[{"CheckID": "x", "Status": "critical"}])
    found = imported_from_entry(critical, "east")
    assert found is not None and not found[1].healthy


@pytest.mark.parametrize(
    ("field", "value"),
    [(META_PORTS, "not json"), (META_PORTS, '[{"port": 0}]'), (META_READY, "-1")],
)
def test_malformed_meta_is_an_error_not_a_crash(field: str, value: str) -> None:
    meta = {**service_registration(exp("web"), WEST)["Meta"], field: value}
    with pytest.raises(ValueError):
        imported_from_entry(entry(meta), "east")


def test_heartbeat_entries() -> None:
    reg = heartbeat_registration(WEST, 12)
    chk = heartbeat_check("beat 1", 12)
    beats = beats_from_entries([{"Service": reg, "Checks": [chk]}], "east")
    assert beats == {"west": Beat(output="beat 1", passing=True, ttl_s=12.0)}
    assert beats_from_entries([{"Service": reg, "Checks": [chk]}], "west") == {}


def test_index_rules() -> None:
    assert parse_index("42") == 42
    with pytest.raises(ValueError):
        parse_index("x")
    assert next_index(0, 5) == 5
    assert next_index(10, 5) == 0  # went backwards: reset, answer at once
    assert next_index(0, 0) == 1  # never block on 0
    assert next_index(5, 5) == 5
    assert changed(0, 5) and changed(5, 6) and not changed(5, 5)


def test_pacer_and_backoff() -> None:
    pacer = Pacer(0.5)
    assert pacer.delay(10.0) == 0.0
    pacer.started(10.0)
    assert pacer.delay(10.2) == pytest.approx(0.3)
    assert pacer.delay(11.0) == 0.0
    backoff = Backoff(0.1, 1.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    assert all(0.05 <= d <= 1.0 for d in delays) and delays[-1] >= 0.5
    backoff.reset()
    assert backoff.next_delay() <= 0.1


def test_liveness_judges_on_our_clock_and_forgives_outages() -> None:
    live = Liveness()
    live.observe({"west": Beat("b1", True, 3.0)}, now=100.0)
    assert live.alive("west", 102.9) and not live.alive("west", 103.1)
    live.observe({"west": Beat("b2", True, 3.0)}, now=103.5)
    assert live.alive("west", 106.0)
    live.outage_over(now=110.0)  # we could not read for a while: nobody is late
    assert live.alive("west", 112.0)
    assert live.next_deadline(112.0) == pytest.approx(113.0)
    live.observe({"west": Beat("b2", False, 3.0)}, now=112.5)
    assert not live.alive("west", 112.5)
    assert live.alive("never-seen", 0.0)


def test_settings_refuse_what_consul_refuses() -> None:
    with pytest.raises(ValueError, match="session_ttl_s"):
        SyncSettings(session_ttl_s=5)
    with pytest.raises(ValueError, match="heartbeat_ttl_s"):
        SyncSettings(heartbeat_interval_s=10, heartbeat_ttl_s=5)


def test_exports_that_are_not_dns_labels_are_refused_by_name() -> None:
    desired, problems = desired_services([exp("web/x"), exp("ok", "Bad_NS")], IDENT, 30)
    assert list(desired) == [HEARTBEAT_SERVICE]
    assert len(problems) == 2 and "'Bad_NS'" in problems[0] and "'web/x'" in problems[1]


def test_client_factory_addresses() -> None:
    assert callable(client_factory("127.0.0.1:8500"))
    assert callable(client_factory("https://consul.example:8501"))
    assert callable(client_factory(None))
    for bad in ("ftp://h:1", "h:port", "http://:80"):
        with pytest.raises(ValueError, match="Consul address"):
            client_factory(bad)
