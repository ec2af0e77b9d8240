"""Conformance: blocking queries and the ``X-Consul-*`` headers, through py-consul.

A waiting query returns when another client writes to what it watches, and returns the same
index when its wait runs out; index 0 answers at once; indexes never go backwards."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import consul
import consul.aio
import pytest
from consul.exceptions import BadRequest


def raw(response: Any) -> Any:
    return response


async def test_write_from_another_client_unblocks_health_watch(
    aclient: consul.aio.Consul, client: consul.Consul, uid: str
) -> None:
    name = f"{uid}-web"
    client.catalog.register(f"{uid}-n1", "10.0.0.1", service={"Service": name})
    index, _ = await aclient.health.service(name)
    watch = asyncio.ensure_future(aclient.health.service(name, index=index, wait="20s"))
    await asyncio.sleep(0.2)
    assert not watch.done()
    started = time.monotonic()
    await asyncio.to_thread(
        client.catalog.register, f"{uid}-n2", "10.0.0.2", service={"Service": name}
    )
    new_index, nodes = await asyncio.wait_for(watch, 10)
    assert time.monotonic() - started < 5
    assert int(new_index) > int(index)
    assert sorted(n["Node"]["Node"] for n in nodes) == [f"{uid}-n1", f"{uid}-n2"]


def test_sync_services_watch_wakes_on_register(client: consul.Consul, uid: str) -> None:
    index, _ = client.catalog.services()
    result: dict[str, Any] = {}

    def watch() -> None:
        result["answer"] = client.catalog.services(index=index, wait="20s")

    thread = threading.Thread(target=watch)
    thread.start()
    time.sleep(0.2)  # let the query reach the server and block
    other = consul.Consul(host=client.http.host, port=client.http.port)
    other.catalog.register(f"{uid}-n", "10.0.0.1", service={"Service": f"{uid}-svc"})
    thread.join(10)
    assert not thread.is_alive()
    new_index, services = result["answer"]
    assert int(new_index) > int(index)
    assert f"{uid}-svc" in services


async def test_kv_watch_wakes_on_put_to_the_key(
    aclient: consul.aio.Consul, client: consul.Consul, uid: str
) -> None:
    key = f"{uid}/watched"
    client.kv.put(key, "1")
    index, _ = await aclient.kv.get(key)
    watch = asyncio.ensure_future(aclient.kv.get(key, index=index, wait="20s"))
    await asyncio.sleep(0.2)
    await asyncio.to_thread(client.kv.put, key, "2")
    new_index, entry = await asyncio.wait_for(watch, 10)
    assert entry["Value"] == b"2" and int(new_index) > int(index)


async def test_recurse_watch_wakes_on_delete_under_prefix(
    aclient: consul.aio.Consul, client: consul.Consul, uid: str
) -> None:
    client.kv.put(f"{uid}/a", "1")
    client.kv.put(f"{uid}/b", "2")
    index, _ = await aclient.kv.get(f"{uid}/", recurse=True)
    watch = asyncio.ensure_future(aclient.kv.get(f"{uid}/", recurse=True, index=index, wait="20s"))
    await asyncio.sleep(0.2)
    await asyncio.to_thread(client.kv.delete, f"{uid}/b")
    new_index, entries = await asyncio.wait_for(watch, 10)
    assert int(new_index) > int(index)
    assert [e["Key"] for e in entries] == [f"{uid}/a"]


def test_wait_times_out_with_the_same_index(client: consul.Consul, uid: str) -> None:
    client.kv.put(f"{uid}/quiet", "1")
    index, _ = client.kv.get(f"{uid}/quiet")
    started = time.monotonic()
    new_index, entry = client.kv.get(f"{uid}/quiet", index=index, wait="1s")
    elapsed = time.monotonic() - started
    assert new_index == index and entry["Value"] == b"1"
    assert 0.9 <= elapsed < 1 + 1 / 16 + 1.5  # wait plus at most wait/16 of jitter


def test_unrelated_write_does_not_change_a_service_index(client: consul.Consul, uid: str) -> None:
    client.catalog.register(f"{uid}-n1", "10.0.0.1", service={"Service": f"{uid}-a"})
    index, _ = client.catalog.service(f"{uid}-a")
    client.catalog.register(f"{uid}-n2", "10.0.0.2", service={"Service": f"{uid}-b"})
    client.kv.put(f"{uid}/k", "v")
    started = time.monotonic()
    same_index, _ = client.catalog.service(f"{uid}-a", index=index, wait="1s")
    assert same_index == index and time.monotonic() - started >= 0.9


def test_index_zero_answers_at_once(client: consul.Consul, uid: str) -> None:
    started = time.monotonic()
    response = client.http.get(raw, f"/v1/kv/{uid}/none", params=[("index", "0"), ("wait", "5s")])
    assert response.code == 404
    assert time.monotonic() - started < 2


def test_stale_index_answers_at_once(client: consul.Consul, uid: str) -> None:
    client.kv.put(f"{uid}/k", "1")
    index, _ = client.kv.get(f"{uid}/k")
    client.kv.put(f"{uid}/k", "2")
    started = time.monotonic()
    new_index, entry = client.kv.get(f"{uid}/k", index=index, wait="5s")
    assert time.monotonic() - started < 2
    assert int(new_index) > int(index) and entry["Value"] == b"2"


def test_read_headers(client: consul.Consul, uid: str) -> None:
    client.kv.put(f"{uid}/h", "v")
    for path in (f"/v1/kv/{uid}/h", "/v1/catalog/services", f"/v1/health/service/{uid}-x",
                 f"/v1/catalog/service/{uid}-x", "/v1/session/list"):  # fmt: skip
        response = client.http.get(raw, path)
        assert response.code == 200, path
        assert int(response.headers["X-Consul-Index"]) >= 1, path
        assert response.headers["X-Consul-KnownLeader"] in ("true", "false"), path
        assert response.headers["X-Consul-LastContact"].isdigit(), path
        assert response.headers["Content-Type"].startswith("application/json"), path


def test_indexes_never_go_backwards(client: consul.Consul, uid: str) -> None:
    seen = []
    for i in range(5):
        client.kv.put(f"{uid}/seq", str(i))
        seen.append(int(client.kv.get(f"{uid}/seq")[0]))
        client.catalog.register(f"{uid}-n", "10.0.0.1", service={"Service": uid, "Port": i})
        seen.append(int(client.catalog.service(uid)[0]))
    assert seen == sorted(seen)
    assert min(seen) >= 1


def test_bad_wait_and_index_are_400(client: consul.Consul, uid: str) -> None:
    with pytest.raises(BadRequest, match="Invalid wait time"):
        client.kv.get(f"{uid}/k", index=5, wait="10")
    with pytest.raises(BadRequest, match="Invalid index"):
        client.kv.get(f"{uid}/k", index="abc")
    with pytest.raises(BadRequest, match="Invalid index"):
        client.catalog.services(index="-1")
