"""The catalog's derived read views (views.py) answer exactly what a full scan answers, and
a blocking read of one node is not woken by writes to other nodes."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import consul.aio
import msgspec

from federation.catalog import catalog, render
from federation.catalog.blocking import Notifier, block
from federation.catalog.clock import ManualClock
from federation.catalog.state import Store


def _scan(store: Store) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for instances in store.services_by_name.values():
        for svc in instances.values():
            tags = out.setdefault(svc.service, [])
            for tag in svc.tags or ():
                if tag not in tags:
                    tags.append(tag)
    return dict(sorted(out.items()))


def _register(store: Store, node: str, sid: str, name: str, tags: list[str]) -> None:
    catalog.register(
        store,
        {
            "Node": node,
            "Address": "10.0.0.1",
            "Service": {"ID": sid, "Service": name, "Tags": tags, "Port": 80},
        },
    )


def test_the_service_list_view_matches_a_full_scan_through_random_writes() -> None:
    store = Store(clock=ManualClock())
    rng = random.Random(7)
    names = ["web", "Web", "api", "db", "cache", "b", "a"]
    for step in range(600):
        node = f"n{rng.randrange(4)}"
        sid = f"s{rng.randrange(6)}"
        op = rng.random()
        if op < 0.6:
            tags = rng.sample(["x", "y", "z", "isthmus"], rng.randrange(3))
            _register(store, node, sid, rng.choice(names), tags)
        elif op < 0.9:
            catalog.deregister(store, {"Node": node, "ServiceID": sid})
        else:
            catalog.deregister(store, {"Node": node})
        if step % 3 == 0:
            got = catalog.list_services(store).value
            assert got == _scan(store) and list(got) == list(_scan(store)), step
    # A view built late (as after loading a data file) starts from the full scan.
    fresh = Store(clock=ManualClock())
    fresh.services_by_name = store.services_by_name
    fresh.tables = dict(store.tables)
    assert catalog.list_services(fresh).value == _scan(store)


def test_the_node_body_is_rendered_as_before_and_reused_per_index() -> None:
    store = Store(clock=ManualClock())
    for i in range(5):
        _register(store, "east", f"svc{i}", f"svc{i}", ["isthmus"])
    result = catalog.node_services(store, "east")
    assert result.value is not None
    found, services = result.value

    def build(rendered: Any) -> Any:
        return render.node_services(found, services, rendered)

    body = store.node_bodies.body("east", result.index, build, render.service)
    assert msgspec.json.decode(body) == render.node_services(found, services)
    assert store.node_bodies.body("east", result.index, build, render.service) is body
    _register(store, "east", "svc1", "svc1", ["isthmus", "changed"])
    again = catalog.node_services(store, "east")
    assert again.value is not None and again.index > result.index
    body2 = store.node_bodies.body(
        "east",
        again.index,
        lambda r: render.node_services(again.value[0], again.value[1], r),  # type: ignore[index]
        render.service,
    )
    decoded = msgspec.json.decode(body2)
    assert decoded["Services"]["svc1"]["Tags"] == ["isthmus", "changed"]
    assert decoded == render.node_services(*again.value)


async def test_a_node_watch_is_not_woken_by_other_nodes() -> None:
    store = Store(clock=ManualClock())
    notifier = Notifier()
    store.subscribe(notifier.publish)
    _register(store, "east", "web", "web", ["isthmus"])
    first = catalog.node_services(store, "east")
    reads = 0

    def read() -> Any:
        nonlocal reads
        reads += 1
        return catalog.node_services(store, "east")

    query = asyncio.ensure_future(block(notifier, read, first.index, 30.0))
    await asyncio.sleep(0)
    for i in range(50):  # another cluster writing: never wakes the watch of east
        _register(store, "west", f"s{i}", f"s{i}", ["isthmus"])
        await asyncio.sleep(0)
    assert not query.done() and reads == 1
    _register(store, "east", "api", "api", ["isthmus"])
    result = await asyncio.wait_for(query, 5)
    assert result.value is not None and [s.id for s in result.value[1]] == ["api", "web"]
    assert reads == 2


async def test_node_reads_through_py_consul(aclient: consul.aio.Consul, uid: str) -> None:
    node = f"{uid}-n"
    for i in range(3):
        service = {"ID": f"s{i}", "Service": f"{uid}-s{i}", "Tags": ["t"], "Port": 80 + i}
        assert await aclient.catalog.register(node, "10.1.1.1", service=service)
    index, data = await aclient.catalog.node(node)
    assert data["Node"]["Address"] == "10.1.1.1"
    assert sorted(data["Services"]) == ["s0", "s1", "s2"]
    assert data["Services"]["s2"]["Port"] == 82
    index2, again = await aclient.catalog.node(node)
    assert again == data and int(index2) >= int(index)
    try:
        _, services = await aclient.catalog.services()
        assert services[f"{uid}-s1"] == ["t"]
    finally:
        await aclient.catalog.deregister(node)
