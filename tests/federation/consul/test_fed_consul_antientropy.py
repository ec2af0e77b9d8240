"""Restarts, the synced guard and anti-entropy: the writes are counted on the client."""

from __future__ import annotations

from collections.abc import Callable

from federation.consul import SyncSettings
from tests.federation.consul.consul_sync_support import (
    FAST,
    Cluster,
    Running,
    Writes,
    aclient,
    eventually,
    make_sync,
    svc,
)


async def test_a_restarted_exporter_deregisters_nothing_and_rewrites_nothing(
    consul_addr: tuple[str, int], names: Callable[[str], str], running: Running
) -> None:
    east, west = Cluster(names("east")), Cluster(names("west"))
    east.exports[:] = [svc("a"), svc("b", ready=3)]
    east.synced.set()
    west.synced.set()
    first = running.start(make_sync(Writes().factory(*consul_addr), east, replica="r1"))
    w = running.start(make_sync(Writes().factory(*consul_addr), west))
    keys = {(east.name, "default", "a"), (east.name, "default", "b")}
    await eventually(lambda: keys <= w.imports.keys(), 3, "a and b imported")
    before, version = w.imports, w.version
    await running.stop(first)

    writes = Writes()
    second = running.start(make_sync(writes.factory(*consul_addr), east, replica="r2"))
    await eventually(lambda: second.is_leader, 5, "the new instance leads")
    passes = second.exporter.metrics.reconciles
    await eventually(lambda: second.exporter.metrics.reconciles >= passes + 3, 5, "3 passes")
    assert writes.count("deregister") == 0
    assert writes.count("register", heartbeat=False) == 0  # only heartbeats were written
    assert second.exporter.metrics.deregistrations == 0
    assert w.imports == before and w.version == version  # the other cluster saw no change


async def test_nothing_is_deregistered_before_synced_even_with_no_exports(
    consul_addr: tuple[str, int], names: Callable[[str], str], running: Running
) -> None:
    east, west = Cluster(names("east")), Cluster(names("west"))
    east.exports[:] = [svc("a"), svc("b")]
    east.synced.set()
    west.synced.set()
    first = running.start(make_sync(Writes().factory(*consul_addr), east, replica="r1"))
    w = running.start(make_sync(Writes().factory(*consul_addr), west))
    ka, kb = (east.name, "default", "a"), (east.name, "default", "b")
    await eventually(lambda: {ka, kb} <= w.imports.keys(), 3, "a and b imported")
    await running.stop(first)

    # A restart whose sources have not listed anything yet: empty exports, not synced.
    restarted = Cluster(east.name)
    writes = Writes()
    second = running.start(make_sync(writes.factory(*consul_addr), restarted, replica="r2"))
    await eventually(lambda: second.is_leader, 5, "the new instance leads")
    passes = second.exporter.metrics.reconciles
    await eventually(lambda: second.exporter.metrics.reconciles >= passes + 3, 5, "3 passes")
    assert writes.count("deregister") == 0
    assert second.exporter.metrics.held_back == 2  # a and b are kept on purpose
    assert {ka, kb} <= w.imports.keys()

    # The sources finish their list: b is really gone now, and only b is removed.
    restarted.exports[:] = [svc("a")]
    restarted.synced.set()
    second.notify()
    await eventually(lambda: kb not in w.imports, 3, "b removed")
    assert ka in w.imports
    assert writes.count("deregister") == 1
    assert writes.count("register", heartbeat=False) == 0


async def test_anti_entropy_repairs_hand_edits_and_is_quiet_otherwise(
    consul_addr: tuple[str, int], names: Callable[[str], str], running: Running
) -> None:
    east = Cluster(names("east"))
    east.exports[:] = [svc("a", ready=2), svc("b", ready=4)]
    east.synced.set()
    # Heartbeats far apart, so that every write in the window below is anti-entropy's.
    quiet = SyncSettings(
        **{**_fields(FAST), "heartbeat_interval_s": 300.0, "heartbeat_ttl_s": 900.0}
    )
    writes = Writes()
    e = running.start(make_sync(writes.factory(*consul_addr), east, settings=quiet))
    node = f"isthmus-{east.name}"
    await eventually(lambda: writes.count("register", heartbeat=False) == 2, 3, "initial export")

    # Nothing drifted: passes read, and write nothing.
    count = len(writes.calls)
    passes = e.exporter.metrics.reconciles
    await eventually(lambda: e.exporter.metrics.reconciles >= passes + 3, 5, "quiet passes")
    assert len(writes.calls) == count
    assert e.exporter.metrics.drift_repairs == 0

    async with aclient(consul_addr) as client:
        await client.catalog.deregister(node, service_id="a-default")
        _, data = await client.catalog.node(node)
        edited = dict(data["Services"]["b-default"])
        edited["Meta"] = {**edited["Meta"], "isthmus-ready-endpoints": "999"}
        service = {k: edited[k] for k in ("ID", "Service", "Tags", "Address", "Port", "Meta")}
        assert await client.catalog.register(node, data["Node"]["Address"], service=service)

        async def repaired() -> bool:
            _, now = await client.catalog.node(node)
            services = now["Services"]
            return (
                "a-default" in services
                and services["b-default"]["Meta"]["isthmus-ready-endpoints"] == "4"
            )

        await eventually(repaired, 3, "a put back and b's Meta restored")
    assert e.exporter.metrics.drift_repairs == 2
    assert writes.count("register", heartbeat=False) == 4
    assert writes.count("deregister") == 0

    count = len(writes.calls)
    passes = e.exporter.metrics.reconciles
    await eventually(lambda: e.exporter.metrics.reconciles >= passes + 2, 5, "quiet again")
    assert len(writes.calls) == count


async def test_a_local_change_writes_its_difference_without_reading_the_node(
    consul_addr: tuple[str, int], names: Callable[[str], str], running: Running
) -> None:
    east = Cluster(names("east"))
    east.exports[:] = [svc("a", ready=2), svc("b"), svc("c")]
    east.synced.set()
    quiet = SyncSettings(
        **{**_fields(FAST), "heartbeat_interval_s": 300.0, "heartbeat_ttl_s": 900.0,
           "anti_entropy_interval_s": 300.0}
    )  # fmt: skip
    writes = Writes()
    reads: list[str] = []
    make = writes.factory(*consul_addr)

    def counting() -> object:
        client = make()
        node_read = client.catalog.node

        def counted(node: str, **kw: object) -> object:
            reads.append(node)
            return node_read(node, **kw)

        client.catalog.node = counted
        return client

    e = running.start(make_sync(counting, east, settings=quiet))
    node = f"isthmus-{east.name}"
    await eventually(lambda: writes.count("register", heartbeat=False) == 3, 3, "initial export")
    await eventually(lambda: e.exporter.metrics.reconciles >= 1, 3, "the first pass ends")
    first_reads = len(reads)

    # a scaled, b gone, d new: three writes, and the node is not read again for them.
    east.exports[:] = [svc("a", ready=5), svc("c"), svc("d")]
    e.notify()
    await eventually(lambda: writes.count("deregister") == 1, 3, "b deregistered")
    await eventually(lambda: writes.count("register", heartbeat=False) == 5, 3, "a and d written")
    assert [sid for op, _, sid, _ in writes.calls if op == "deregister"] == ["b-default"]
    assert len(reads) == first_reads
    async with aclient(consul_addr) as client:
        _, data = await client.catalog.node(node)
        services = data["Services"]
        assert {"a-default", "c-default", "d-default"} <= set(services)
        assert "b-default" not in services
        assert services["a-default"]["Meta"]["isthmus-ready-endpoints"] == "5"


def _fields(settings: SyncSettings) -> dict[str, object]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


async def test_a_failing_exports_provider_leaves_consul_alone(
    consul_addr: tuple[str, int], names: Callable[[str], str], running: Running
) -> None:
    east = Cluster(names("east"))
    east.exports[:] = [svc("a")]
    east.synced.set()
    writes = Writes()
    e = running.start(make_sync(writes.factory(*consul_addr), east))
    await eventually(lambda: writes.count("register", heartbeat=False) == 1, 3, "a exported")
    east.broken = True
    e.notify()
    await eventually(lambda: e.exporter.metrics.provider_errors >= 2, 5, "provider errors")
    assert writes.count("deregister") == 0 and writes.count("register", heartbeat=False) == 1
    east.broken = False
    east.exports.append(svc("b"))
    e.notify()
    await eventually(lambda: writes.count("register", heartbeat=False) == 2, 3, "b exported")
    assert writes.count("deregister") == 0
