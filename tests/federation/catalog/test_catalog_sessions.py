"""Conformance: sessions through py-consul (sync and asyncio): create/info/list/node/renew/
destroy, invalidation releasing locks, lock delay, ``delete`` behavior, TTL expiry, and the
session error answers."""

from __future__ import annotations

import time
import uuid

import consul
import consul.aio
import pytest


def test_create_info_list_node(client: consul.Consul, uid: str) -> None:
    sid = client.session.create(name=f"{uid}-s", lock_delay=3, ttl=30)
    try:
        uuid.UUID(sid)
        index, info = client.session.info(sid)
        assert info["ID"] == sid and info["Name"] == f"{uid}-s"
        assert info["LockDelay"] == 3_000_000_000
        assert info["TTL"] == "30s"
        assert info["Behavior"] == "release"
        assert int(index) >= info["CreateIndex"] >= 1
        _, listed = client.session.list()
        assert sid in [s["ID"] for s in listed]
        _, on_node = client.session.node(info["Node"])
        assert sid in [s["ID"] for s in on_node]
    finally:
        assert client.session.destroy(sid) is True
    _, gone = client.session.info(sid)
    assert gone is None


def test_renew_returns_session_and_unknown_is_404(client: consul.Consul, uid: str) -> None:
    sid = client.session.create(name=uid, ttl=10)
    try:
        renewed = client.session.renew(sid)
        assert renewed["ID"] == sid and renewed["TTL"] == "10s"
    finally:
        client.session.destroy(sid)
    missing = str(uuid.uuid4())
    with pytest.raises(consul.NotFound, match=f"Session id '{missing}' not found"):
        client.session.renew(missing)


def test_destroy_releases_lock_and_lock_delay_blocks_reacquire(
    client: consul.Consul, uid: str
) -> None:
    key = f"{uid}/leader"
    holder = client.session.create(name=f"{uid}-holder", lock_delay=1)
    other = client.session.create(name=f"{uid}-other", lock_delay=0)
    try:
        assert client.kv.put(key, "holder", acquire=holder)
        released_at = time.monotonic()
        client.session.destroy(holder)
        _, entry = client.kv.get(key)
        assert "Session" not in entry and entry["Value"] == b"holder"
        assert client.kv.put(key, "other", acquire=other) is False  # inside the lock delay
        # The delay is wall time on the server: poll for the end of it, bounded.
        while not client.kv.put(key, "other", acquire=other):
            assert time.monotonic() - released_at < 5, "lock delay never ended"
            time.sleep(0.05)
        assert time.monotonic() - released_at >= 0.9
        assert client.kv.get(key)[1]["Session"] == other
    finally:
        client.session.destroy(other)


def test_delete_behavior_removes_held_keys(client: consul.Consul, uid: str) -> None:
    sid = client.session.create(name=uid, behavior="delete", lock_delay=0)
    client.kv.put(f"{uid}/ephemeral", "x", acquire=sid)
    client.session.destroy(sid)
    assert client.kv.get(f"{uid}/ephemeral")[1] is None


def test_session_on_unregistered_node_or_missing_check_is_500(
    client: consul.Consul, uid: str
) -> None:
    with pytest.raises(consul.ConsulException, match="500"):
        client.session.create(node=f"{uid}-ghost")
    client.catalog.register(f"{uid}-n", "10.0.0.1")
    # The default check is the node's serfHealth, which a catalog-registered node lacks.
    with pytest.raises(consul.ConsulException, match="serfHealth"):
        client.session.create(node=f"{uid}-n")
    sid = client.session.create(node=f"{uid}-n", checks=[])
    _, info = client.session.info(sid)
    assert info["Node"] == f"{uid}-n"
    client.catalog.deregister(f"{uid}-n")  # takes the session with it
    assert client.session.info(sid)[1] is None


def test_bad_session_body_is_400_and_bad_ttl_is_500(client: consul.Consul) -> None:
    response = client.http.put(lambda r: r, "/v1/session/create", data="{nope")
    assert response.code == 400 and response.body.startswith("Request decode failed")
    response = client.http.put(lambda r: r, "/v1/session/create", data='{"TTL": "1s"}')
    assert response.code == 500 and "Invalid Session TTL" in response.body
    response = client.http.put(lambda r: r, "/v1/session/create", data='{"Behavior": "x"}')
    assert response.code == 500 and "Invalid Behavior" in response.body


def test_ttl_expiry_releases_the_lock(client: consul.Consul, uid: str) -> None:
    """The shortest TTL Consul allows (10 s); the release is awaited with a blocking query."""
    key = f"{uid}/ttl-lock"
    sid = client.session.create(name=uid, ttl=10, lock_delay=0)
    assert client.kv.put(key, "v", acquire=sid)
    index, entry = client.kv.get(key)
    start = time.monotonic()
    deadline = start + 60  # Consul may take up to twice the TTL
    while entry.get("Session") == sid and time.monotonic() < deadline:
        index, entry = client.kv.get(key, index=index, wait="30s")
    assert "Session" not in entry
    assert time.monotonic() - start >= 9
    assert client.session.info(sid)[1] is None


async def test_aio_sessions(aclient: consul.aio.Consul, uid: str) -> None:
    sid = await aclient.session.create(name=uid, ttl=15, lock_delay=0)
    assert await aclient.kv.put(f"{uid}/l", "x", acquire=sid) is True
    renewed = await aclient.session.renew(sid)
    assert renewed["ID"] == sid
    assert await aclient.session.destroy(sid) is True
    _, entry = await aclient.kv.get(f"{uid}/l")
    assert "Session" not in entry
    with pytest.raises(consul.NotFound):
        await aclient.session.renew(sid)
