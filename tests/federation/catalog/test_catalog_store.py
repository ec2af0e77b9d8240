"""Unit tests of the sans-IO store: indexes, catalog, KV, sessions, time on a ManualClock,
Go durations, body decoding, the data file format, and the blocking-query notifier."""

from __future__ import annotations

import asyncio

import pytest

from federation.catalog import catalog, health, kv, persist, sessions
from federation.catalog.blocking import Notifier, block
from federation.catalog.clock import ManualClock
from federation.catalog.decode import DecodeError, decode, parse_json
from federation.catalog.durations import DurationError, format_duration, parse_duration
from federation.catalog.errors import RPCError
from federation.catalog.state import Store


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(clock: ManualClock) -> Store:
    s = Store(clock=clock, node_name="agent")
    s.ensure_agent_node()
    return s


def reg(store: Store, node: str = "n1", address: str = "10.0.0.1", **extra: object) -> None:
    body: dict[str, object] = {"Node": node, "Address": address}
    body.update(extra)
    catalog.register(store, body)


# -- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ns"),
    [("0", 0), ("10s", 10 * 10**9), ("1m30s", 90 * 10**9), ("1.5h", 5400 * 10**9),
     ("100ms", 10**8), ("-5s", -5 * 10**9), ("2us", 2000), ("3µs", 3000), (".5s", 5 * 10**8)],
)  # fmt: skip
def test_parse_duration_accepts_go_syntax(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize(
    ("text", "message"),
    [("10", 'time: missing unit in duration "10"'), ("", 'time: invalid duration ""'),
     ("5x", 'time: unknown unit "x" in duration "5x"'), ("s", 'time: invalid duration "s"')],
)  # fmt: skip
def test_parse_duration_rejects_with_go_messages(text: str, message: str) -> None:
    with pytest.raises(DurationError) as exc:
        parse_duration(text)
    assert str(exc.value) == message


def test_format_duration_matches_go() -> None:
    assert format_duration(0) == "0s"
    assert format_duration(10 * 10**9) == "10s"
    assert format_duration(24 * 3600 * 10**9) == "24h0m0s"
    assert format_duration(90 * 10**9) == "1m30s"
    assert format_duration(1_500_000) == "1.5ms"


# -- decoding --------------------------------------------------------------------------------


def test_decode_matches_field_names_case_insensitively_and_ignores_unknown() -> None:
    body = parse_json(b'{"node": "a", "ADDRESS": "1.2.3.4", "Bogus": 1, "service": {"port": 80}}')
    req = decode(body, catalog.REGISTER_SCHEMA)
    assert req == {"Node": "a", "Address": "1.2.3.4", "Service": {"Port": 80}}


def test_decode_reports_go_type_errors() -> None:
    with pytest.raises(DecodeError) as exc:
        decode(parse_json(b'{"Node": "a", "Service": {"Port": "80"}}'), catalog.REGISTER_SCHEMA)
    assert str(exc.value) == (
        "json: cannot unmarshal string into Go struct field "
        "RegisterRequest.Service.Port of type int"
    )
    with pytest.raises(DecodeError, match=r"Go value of type structs\.RegisterRequest"):
        decode(parse_json(b"[1]"), catalog.REGISTER_SCHEMA)


def test_parse_json_reads_only_the_first_value() -> None:
    assert parse_json(b'{"a": 1} trailing') == {"a": 1}
    with pytest.raises(DecodeError, match="EOF"):
        parse_json(b"   ")
    with pytest.raises(DecodeError):
        parse_json(b'{"a": NaN}')


# -- indexes and the catalog ---------------------------------------------------------------


def test_index_starts_above_zero_and_never_goes_backwards(store: Store) -> None:
    seen = [store.index]
    reg(store, Service={"Service": "web"})
    seen.append(store.index)
    catalog.deregister(store, {"Node": "n1"})
    seen.append(store.index)
    assert seen[0] >= 1
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


def test_unchanged_reregistration_moves_no_index(store: Store) -> None:
    svc = {"Service": "web", "Tags": ["a"], "Port": 80}
    check = {"CheckID": "c", "Status": "passing", "ServiceID": "web"}
    reg(store, Service=svc, Check=check)
    before = catalog.service_nodes(store, "web")
    before_services = catalog.list_services(store)
    reg(store, Service=svc, Check=check)
    after = catalog.service_nodes(store, "web")
    assert after.index == before.index
    assert catalog.list_services(store).index == before_services.index
    assert after.value[0][1].modify_index == before.value[0][1].modify_index


def test_service_index_moves_only_for_its_own_service(store: Store) -> None:
    reg(store, Service={"Service": "web"})
    reg(store, "n2", Service={"Service": "db"})
    web = catalog.service_nodes(store, "web").index
    reg(store, "n2", Service={"Service": "db", "Port": 5432})
    assert catalog.service_nodes(store, "web").index == web
    assert catalog.service_nodes(store, "db").index > web


def test_node_address_change_moves_its_services_index(store: Store) -> None:
    reg(store, Service={"Service": "web"})
    web = catalog.service_nodes(store, "web").index
    reg(store, address="10.0.0.9")
    assert catalog.service_nodes(store, "web").index > web


def test_last_instance_gone_sets_extinction_index(store: Store) -> None:
    reg(store, Service={"Service": "web"})
    catalog.deregister(store, {"Node": "n1", "ServiceID": "web"})
    gone = catalog.service_nodes(store, "web")
    assert gone.value == []
    assert gone.index == store.extinction_index == store.index


def test_register_validation_messages(store: Store) -> None:
    cases = [
        ({"Address": "1.1.1.1"}, "Must provide node"),
        ({"Node": "n"}, "Must provide address if SkipNodeUpdate is not set"),
        ({"Node": "n", "Address": "a", "Service": {"ID": "x"}}, "Must provide service name"),
        ({"Node": "n", "Address": "a", "ID": "nope"}, "Bad node ID"),
        ({"Node": "n", "Address": "a", "Service": {"Service": "s", "Address": "0.0.0.0"}},
         "Invalid service address"),
        ({"Node": "n", "Address": "a", "Check": {"CheckID": "c", "ServiceID": "zz"}},
         "Unknown service ID 'zz' for check ID 'c'"),
    ]  # fmt: skip
    for body, message in cases:
        with pytest.raises(RPCError, match=message):
            catalog.register(store, body)
    assert "n" not in store.nodes


def test_deregister_node_removes_everything_on_it(store: Store) -> None:
    reg(store, Service={"Service": "web"}, Checks=[{"CheckID": "c1", "Status": "passing"}])
    catalog.deregister(store, {"Node": "n1"})
    assert catalog.list_services(store).value == {}
    assert "n1" not in store.nodes and not store.node_checks.get("n1")


def test_health_passing_drops_warning_and_node_level_failures(store: Store) -> None:
    reg(store, "a", Service={"Service": "web"}, Check={"CheckID": "w", "Status": "warning",
        "ServiceID": "web"})  # fmt: skip
    reg(store, "b", Service={"Service": "web"}, Check={"CheckID": "n", "Status": "critical"})
    reg(store, "c", Service={"Service": "web"}, Check={"CheckID": "ok", "Status": "passing"})
    every = health.service_health(store, "web")
    passing = health.service_health(store, "web", passing=True)
    assert [i.node.node for i in every.value] == ["a", "b", "c"]
    assert [i.node.node for i in passing.value] == ["c"]


def test_tags_filter_requires_every_tag_case_insensitively(store: Store) -> None:
    reg(store, "a", Service={"Service": "web", "Tags": ["Blue", "v1"]})
    reg(store, "b", Service={"Service": "web", "Tags": ["blue"]})
    found = catalog.service_nodes(store, "web", tags=["blue", "V1"]).value
    assert [n.node for n, _s in found] == ["a"]


# -- KV --------------------------------------------------------------------------------------


def test_kv_cas_zero_creates_only_absent_keys(store: Store) -> None:
    assert kv.cas(store, "k", b"1", 0, 0) is True
    assert kv.cas(store, "k", b"2", 0, 0) is False
    entry = kv.get(store, "k").value
    assert entry is not None and entry.value == b"1"
    assert kv.cas(store, "k", b"3", 0, entry.modify_index) is True
    assert kv.cas(store, "k", b"4", 0, entry.modify_index) is False


def test_kv_unchanged_put_keeps_modify_index(store: Store) -> None:
    kv.put(store, "k", b"v")
    first = kv.get(store, "k").index
    kv.put(store, "k", b"v")
    assert kv.get(store, "k").index == first


def test_kv_prefix_index_includes_tombstones(store: Store) -> None:
    kv.put(store, "p/a", b"1")
    kv.put(store, "p/b", b"2")
    kv.put(store, "other", b"3")
    before = kv.list_prefix(store, "p/").index
    kv.delete(store, "p/b")
    after = kv.list_prefix(store, "p/")
    assert after.index > before
    assert [e.key for e in after.value] == ["p/a"]


def test_kv_keys_with_separator_fold(store: Store) -> None:
    for key in ("a/b/c", "a/b/d", "a/e", "a/f/"):
        kv.put(store, key, b"")
    assert kv.list_keys(store, "a/", "/").value == ["a/b/", "a/e", "a/f/"]
    assert kv.list_keys(store, "a/").value == ["a/b/c", "a/b/d", "a/e", "a/f/"]


def test_kv_delete_cas_on_missing_key_is_true(store: Store) -> None:
    assert kv.delete_cas(store, "nope", 5) is True
    kv.put(store, "k", b"v")
    assert kv.delete_cas(store, "k", 0) is False
    assert kv.delete_cas(store, "k", kv.get(store, "k").index) is True


# -- sessions, locks and time ----------------------------------------------------------------


def test_acquire_release_and_lock_index(store: Store) -> None:
    s1 = sessions.create(store, {})
    s2 = sessions.create(store, {})
    assert kv.acquire(store, "lock", b"me", 0, s1) is True
    assert kv.acquire(store, "lock", b"you", 0, s2) is False
    assert kv.release(store, "lock", b"", 0, s2) is False
    assert kv.release(store, "lock", b"free", 0, s1) is True
    assert kv.acquire(store, "lock", b"you", 0, s2) is True
    entry = kv.get(store, "lock").value
    assert entry is not None and entry.lock_index == 2 and entry.session == s2


def test_acquire_with_unknown_session_is_an_rpc_error(store: Store) -> None:
    with pytest.raises(RPCError, match='invalid session "x"'):
        kv.acquire(store, "lock", b"", 0, "x")


def test_destroy_releases_and_lock_delay_blocks_until_it_passes(
    store: Store, clock: ManualClock
) -> None:
    s1 = sessions.create(store, {"LockDelay": 5 * 10**9})
    s2 = sessions.create(store, {})
    kv.acquire(store, "lock", b"v", 0, s1)
    sessions.destroy(store, s1)
    entry = kv.get(store, "lock").value
    assert entry is not None and entry.session == "" and entry.value == b"v"
    index = store.index
    assert kv.acquire(store, "lock", b"", 0, s2) is False
    assert store.index == index  # refused before "Raft": no index taken
    clock.advance(5.01)
    assert kv.acquire(store, "lock", b"", 0, s2) is True


def test_ttl_expiry_invalidates_and_renew_extends(store: Store, clock: ManualClock) -> None:
    sid = sessions.create(store, {"TTL": "10s", "LockDelay": 0})
    kv.acquire(store, "lock", b"", 0, sid)
    clock.advance(9)
    assert sessions.renew(store, sid) is not None
    clock.advance(9)
    assert sessions.expire(store) == []
    clock.advance(1.5)
    assert sessions.expire(store) == [sid]
    assert sid not in store.sessions
    entry = kv.get(store, "lock").value
    assert entry is not None and entry.session == ""


def test_delete_behavior_deletes_held_keys(store: Store) -> None:
    sid = sessions.create(store, {"Behavior": "delete", "LockDelay": 0})
    kv.acquire(store, "eph", b"x", 0, sid)
    sessions.destroy(store, sid)
    assert kv.get(store, "eph").value is None


def test_session_validation_messages(store: Store) -> None:
    with pytest.raises(RPCError, match=r"Invalid Session TTL '5000000000', must be between "
                       r"\[10s=24h0m0s\]"):  # fmt: skip
        sessions.create(store, {"TTL": "5s"})
    with pytest.raises(RPCError, match="Session TTL '10' invalid: time: missing unit"):
        sessions.create(store, {"TTL": "10"})
    with pytest.raises(RPCError, match="Invalid Behavior setting 'bogus'"):
        sessions.create(store, {"Behavior": "bogus"})
    with pytest.raises(RPCError, match="Missing node registration"):
        sessions.create(store, {"Node": "ghost"})
    reg(store)
    with pytest.raises(RPCError, match="Missing check 'serfHealth' registration"):
        sessions.create(store, {"Node": "n1"})
    assert sessions.create(store, {"Node": "n1", "Checks": []})


def test_critical_check_and_node_removal_invalidate_sessions(store: Store) -> None:
    reg(store, Checks=[{"CheckID": "hb", "Status": "passing"}])
    by_check = sessions.create(store, {"Node": "n1", "Checks": ["hb"]})
    unbound = sessions.create(store, {"Node": "n1", "Checks": []})
    reg(store, Checks=[{"CheckID": "hb", "Status": "critical"}])
    assert by_check not in store.sessions and unbound in store.sessions
    catalog.deregister(store, {"Node": "n1"})
    assert unbound not in store.sessions


def test_lock_delay_number_below_1000_means_seconds() -> None:
    assert sessions.lock_delay_ns(5) == 5 * 10**9
    assert sessions.lock_delay_ns("2s") == 2 * 10**9
    assert sessions.lock_delay_ns(2 * 10**9) == 2 * 10**9


# -- the data file -----------------------------------------------------------------------------


def test_dump_and_load_round_trip_keeps_indexes_and_restarts_ttls(
    store: Store, clock: ManualClock
) -> None:
    reg(store, Service={"Service": "web", "Meta": {"k": "v"}}, Check={"CheckID": "c",
        "Status": "passing", "ServiceID": "web"})  # fmt: skip
    kv.put(store, "bin", bytes(range(256)), 7)
    sid = sessions.create(store, {"TTL": "10s"})
    clock.advance(8)
    data = persist.dump(store)

    fresh = Store(clock=clock, node_name="agent")
    persist.load(fresh, data)
    assert fresh.index == store.index
    assert catalog.service_nodes(fresh, "web").index == catalog.service_nodes(store, "web").index
    assert health.service_health(fresh, "web", passing=True).value[0].service.meta == {"k": "v"}
    entry = kv.get(fresh, "bin").value
    assert entry is not None and entry.value == bytes(range(256)) and entry.flags == 7
    clock.advance(8)  # 16 s after creation, 8 s after the load: still alive
    assert sessions.expire(fresh) == []
    clock.advance(2.5)
    assert sessions.expire(fresh) == [sid]


def test_load_refuses_a_foreign_file(clock: ManualClock) -> None:
    with pytest.raises(persist.DataFileError):
        persist.load(Store(clock=clock), b'{"format": "something-else"}')
    with pytest.raises(persist.DataFileError):
        persist.load(Store(clock=clock), b"not json")


# -- blocking --------------------------------------------------------------------------------


async def test_block_wakes_on_its_topic_and_times_out_otherwise(store: Store) -> None:
    notifier = Notifier()
    store.subscribe(notifier.publish)
    reg(store, Service={"Service": "web"})
    reg(store, "n2", Service={"Service": "db"})
    start = catalog.service_nodes(store, "web").index

    waiting = asyncio.ensure_future(
        block(notifier, lambda: catalog.service_nodes(store, "web"), start, 5.0)
    )
    await asyncio.sleep(0)
    reg(store, "n2", Service={"Service": "db", "Port": 1})  # another service: no wake-up
    await asyncio.sleep(0)
    assert not waiting.done()
    reg(store, Service={"Service": "web", "Port": 8080})
    result = await asyncio.wait_for(waiting, 1)
    assert result.index > start and result.value[0][1].port == 8080

    timed_out = await block(notifier, lambda: catalog.service_nodes(store, "web"), 10**9, 0.05)
    assert timed_out.index == result.index
    assert notifier.waiting == 0
