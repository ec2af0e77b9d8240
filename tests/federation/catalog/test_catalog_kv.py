"""Conformance: the KV store through py-consul (sync and asyncio): values and flags, 404s
with index headers, recurse, keys and separator, delete with recurse and cas, CAS writes,
lock acquire/release, and its error answers."""

from __future__ import annotations

from typing import Any

import consul
import consul.aio
import pytest
from consul.exceptions import BadRequest


def raw(response: Any) -> Any:
    return response


def test_put_get_binary_value_and_flags(client: consul.Consul, uid: str) -> None:
    value = bytes(range(256))
    assert client.kv.put(f"{uid}/bin", value, flags=42) is True
    index, entry = client.kv.get(f"{uid}/bin")
    assert entry["Value"] == value
    assert entry["Flags"] == 42
    assert entry["Key"] == f"{uid}/bin"
    assert entry["LockIndex"] == 0 and "Session" not in entry
    assert int(index) == entry["ModifyIndex"] >= entry["CreateIndex"]


def test_empty_value_is_null(client: consul.Consul, uid: str) -> None:
    client.kv.put(f"{uid}/empty", None)
    _, entry = client.kv.get(f"{uid}/empty")
    assert entry["Value"] is None


def test_missing_key_is_404_with_index_header(client: consul.Consul, uid: str) -> None:
    index, entry = client.kv.get(f"{uid}/missing")
    assert entry is None and int(index) >= 1
    response = client.http.get(raw, f"/v1/kv/{uid}/missing")
    assert response.code == 404
    assert response.body == ""
    assert int(response.headers["X-Consul-Index"]) >= 1
    assert response.headers["X-Consul-KnownLeader"] == "true"


def test_recurse_lists_prefix_with_max_modify_index(client: consul.Consul, uid: str) -> None:
    for key in ("a", "b/c", "b/d"):
        client.kv.put(f"{uid}/{key}", key)
    client.kv.put(f"{uid}x/outside", "x")
    index, entries = client.kv.get(f"{uid}/", recurse=True)
    assert [e["Key"] for e in entries] == [f"{uid}/a", f"{uid}/b/c", f"{uid}/b/d"]
    assert [e["Value"] for e in entries] == [b"a", b"b/c", b"b/d"]
    assert int(index) == max(e["ModifyIndex"] for e in entries)
    _index, none = client.kv.get(f"{uid}/zzz/", recurse=True)
    assert none is None


def test_keys_and_separator(client: consul.Consul, uid: str) -> None:
    for key in ("a/1", "a/2", "b", "c/d/e"):
        client.kv.put(f"{uid}/{key}", "")
    _, keys = client.kv.get(f"{uid}/", keys=True)
    assert keys == [f"{uid}/a/1", f"{uid}/a/2", f"{uid}/b", f"{uid}/c/d/e"]
    _, folded = client.kv.get(f"{uid}/", keys=True, separator="/")
    assert folded == [f"{uid}/a/", f"{uid}/b", f"{uid}/c/"]
    # Consul: an empty non-root prefix is 404 (py-consul: None); the root prefix is a list.
    _, none = client.kv.get(f"{uid}/nothing/", keys=True)
    assert none is None
    _, root = client.kv.get("", keys=True)
    assert isinstance(root, list) and f"{uid}/b" in root


def test_delete_and_delete_recurse(client: consul.Consul, uid: str) -> None:
    for key in ("a", "b/c", "b/d"):
        client.kv.put(f"{uid}/{key}", "v")
    assert client.kv.delete(f"{uid}/a") is True
    assert client.kv.delete(f"{uid}/never-there") is True
    assert client.kv.delete(f"{uid}/b/", recurse=True) is True
    _, entries = client.kv.get(f"{uid}/", recurse=True)
    assert entries is None


def test_cas_put_and_cas_delete(client: consul.Consul, uid: str) -> None:
    key = f"{uid}/cas"
    assert client.kv.put(key, "1", cas=0) is True
    assert client.kv.put(key, "2", cas=0) is False
    _, entry = client.kv.get(key)
    stale = entry["ModifyIndex"]
    assert client.kv.put(key, "3", cas=stale) is True
    assert client.kv.put(key, "4", cas=stale) is False
    _, entry = client.kv.get(key)
    assert entry["Value"] == b"3"
    assert client.kv.delete(key, cas=stale) is False
    assert client.kv.delete(key, cas=entry["ModifyIndex"]) is True
    assert client.kv.get(key)[1] is None


def test_acquire_release(client: consul.Consul, uid: str) -> None:
    key = f"{uid}/leader"
    s1 = client.session.create(name=f"{uid}-1", lock_delay=0)
    s2 = client.session.create(name=f"{uid}-2", lock_delay=0)
    try:
        assert client.kv.put(key, "one", acquire=s1) is True
        assert client.kv.put(key, "two", acquire=s2) is False
        assert client.kv.put(key, "one-again", acquire=s1) is True  # holder updates
        _, entry = client.kv.get(key)
        assert (entry["Session"], entry["LockIndex"], entry["Value"]) == (s1, 1, b"one-again")
        assert client.kv.put(key, "x", release=s2) is False
        assert client.kv.put(key, "released", release=s1) is True
        _, entry = client.kv.get(key)
        assert "Session" not in entry and entry["Value"] == b"released"
        assert client.kv.put(key, "two", acquire=s2) is True
        _, entry = client.kv.get(key)
        assert (entry["Session"], entry["LockIndex"]) == (s2, 2)
        # A plain PUT overwrites a locked key and keeps the holder.
        assert client.kv.put(key, "plain") is True
        _, entry = client.kv.get(key)
        assert (entry["Session"], entry["Value"]) == (s2, b"plain")
    finally:
        client.session.destroy(s1)
        client.session.destroy(s2)


def test_acquire_with_invalid_session_is_500(client: consul.Consul, uid: str) -> None:
    with pytest.raises(consul.ConsulException, match="500"):
        client.kv.put(f"{uid}/lock", "v", acquire="3f9a3a5c-1d7e-4e4f-9b1e-000000000000")
    assert client.kv.get(f"{uid}/lock")[1] is None


def test_two_of_cas_acquire_release_is_400(client: consul.Consul, uid: str) -> None:
    with pytest.raises(BadRequest, match="Conflicting flags"):
        client.kv.put(f"{uid}/k", "v", cas=0, acquire="abc")
    with pytest.raises(BadRequest, match="Conflicting flags"):
        client.kv.delete(f"{uid}/k", recurse=True, cas=1)
    assert client.kv.get(f"{uid}/k")[1] is None


def test_value_over_512_kib_is_413_and_server_keeps_working(
    client: consul.Consul, uid: str
) -> None:
    limit = 512 * 1024
    response = client.http.put(raw, f"/v1/kv/{uid}/big", data=b"x" * (limit + 1))
    assert response.code == 413
    assert "too large" in response.body
    assert client.kv.get(f"{uid}/big")[1] is None
    assert client.kv.put(f"{uid}/big", b"x" * limit) is True
    assert len(client.kv.get(f"{uid}/big")[1]["Value"]) == limit


def test_missing_key_name_is_400(client: consul.Consul) -> None:
    response = client.http.put(raw, "/v1/kv/", data=b"v")
    assert (response.code, response.body.strip()) == (400, "Missing key name")
    response = client.http.get(raw, "/v1/kv/")
    assert (response.code, response.body.strip()) == (400, "Missing key name")


async def test_aio_kv_round_trip(aclient: consul.aio.Consul, uid: str) -> None:
    assert await aclient.kv.put(f"{uid}/a", "1") is True
    assert await aclient.kv.put(f"{uid}/a", "2", cas=0) is False
    index, entry = await aclient.kv.get(f"{uid}/a")
    assert entry["Value"] == b"1" and int(index) == entry["ModifyIndex"]
    _, entries = await aclient.kv.get(f"{uid}/", recurse=True)
    assert [e["Key"] for e in entries] == [f"{uid}/a"]
    assert await aclient.kv.delete(f"{uid}/", recurse=True) is True
    assert (await aclient.kv.get(f"{uid}/a"))[1] is None
