"""Export and import between clusters through the catalog, with real py-consul clients.

Each cluster is a ``ConsulSync`` (leader election, exporter, importer) against the shared
catalog; ``Writes`` counts the catalog writes each one's clients make.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.federation.consul.consul_sync_support import (
    Cluster,
    Running,
    Writes,
    aclient,
    eventually,
    make_sync,
    svc,
)


async def test_an_export_is_imported_elsewhere_fast_and_removed_again(
    consul_addr: tuple[str, int], names: Callable[[str], str], running: Running
) -> None:
    east, west = Cluster(names("east")), Cluster(names("west"))
    writes = Writes()
    e = running.start(make_sync(writes.factory(*consul_addr), east))
    w = running.start(make_sync(Writes().factory(*consul_addr), west))
    east.synced.set()
    west.synced.set()
    await eventually(lambda: e.is_leader and w.is_leader, 5, "both leaders")
    await eventually(lambda: w.importer.ready.is_set(), 5, "west's first read")

    key = (east.name, "default", "web")
    start = time.monotonic()
    east.exports.append(svc("web", ready=2))
    e.notify()
    took = await eventually(lambda: key in w.imports, 2, "web imported in west")
    imp = w.imports[key]
    assert (imp.gateway_address, imp.gateway_port) == ("127.0.0.10", 15443)
    assert imp.ready_endpoints == 2 and imp.healthy
    assert imp.trust_domain == f"{east.name}.local"
    assert imp.ports[0].port == 8080
    assert took < 2.0
    assert e.exporter.metrics.sync_lag.count >= 1
    assert e.exporter.metrics.sync_lag.max_s < time.monotonic() - start
    # Not imported by the exporting cluster itself.
    assert not any(k[0] == east.name for k in e.imports)

    # An update (ready count) travels too.
    east.exports[0] = svc("web", ready=5)
    e.notify()
    await eventually(lambda: w.imports.get(key, imp).ready_endpoints == 5, 2, "ready update")

    east.exports.clear()
    e.notify()
    await eventually(lambda: key not in w.imports, 2, "web removed from west")
    assert writes.count("deregister", node=f"isthmus-{east.name}") == 1

    metrics = e.metrics()
    assert metrics["consul_leader"] == 1.0
    assert metrics["consul_writes_deregister_service"] == 1
    assert metrics["consul_writes_register_service"] >= 2
    assert metrics["consul_sync_lag_count"] >= 3
    assert w.metrics()["consul_import_queries"] > 0


async def test_two_clusters_exporting_the_same_service_never_overwrite_each_other(
    consul_addr: tuple[str, int], names: Callable[[str], str], running: Running
) -> None:
    one, two, three = Cluster(names("one")), Cluster(names("two")), Cluster(names("three"))
    writes = {c.name: Writes() for c in (one, two, three)}
    syncs = {}
    for n, c in enumerate((one, two, three)):
        c.synced.set()
        syncs[c.name] = running.start(
            make_sync(writes[c.name].factory(*consul_addr), c, gateway=(f"127.0.1.{n + 1}", 15443))
        )
    one.exports.append(svc("shop", ready=1))
    two.exports.append(svc("shop", ready=7))
    for c in (one, two):
        syncs[c.name].notify()

    k1, k2 = (one.name, "default", "shop"), (two.name, "default", "shop")
    s3 = syncs[three.name]
    await eventually(lambda: k1 in s3.imports and k2 in s3.imports, 3, "both shops in three")
    assert s3.imports[k1].gateway_address == "127.0.1.1" and s3.imports[k1].ready_endpoints == 1
    assert s3.imports[k2].gateway_address == "127.0.1.2" and s3.imports[k2].ready_endpoints == 7
    await eventually(lambda: k2 in syncs[one.name].imports, 3, "two's shop in one")
    await eventually(lambda: k1 in syncs[two.name].imports, 3, "one's shop in two")

    # Let several anti-entropy passes run on both: each writes its own node only.
    passes = {c: syncs[c].exporter.metrics.reconciles for c in (one.name, two.name)}
    await eventually(
        lambda: all(syncs[c].exporter.metrics.reconciles >= passes[c] + 3 for c in passes),
        5,
        "anti-entropy passes",
    )
    for c in (one, two, three):  # each controller wrote its own node only
        assert {node for _op, node, _sid, _chk in writes[c.name].calls} == {f"isthmus-{c.name}"}
    async with aclient(consul_addr) as client:
        _, instances = await client.catalog.service("shop-default")
    mine = {
        i["Node"]: i["ServiceMeta"]["isthmus-ready-endpoints"]
        for i in instances
        if i["Node"] in (f"isthmus-{one.name}", f"isthmus-{two.name}")
    }
    assert mine == {f"isthmus-{one.name}": "1", f"isthmus-{two.name}": "7"}
    for c in (one, two):  # one registration each, never rewritten by the other
        assert writes[c.name].count("register", heartbeat=False) == 1
    assert sum(w.count("deregister") for w in writes.values()) == 0


async def test_export_to_limits_which_clusters_import(
    consul_addr: tuple[str, int], names: Callable[[str], str], running: Running
) -> None:
    src, yes, no = Cluster(names("src")), Cluster(names("yes")), Cluster(names("no"))
    syncs = {}
    for c in (src, yes, no):
        c.synced.set()
        syncs[c.name] = running.start(make_sync(Writes().factory(*consul_addr), c))
    src.exports.append(svc("secret", to=(yes.name,)))
    src.exports.append(svc("public"))
    syncs[src.name].notify()
    await eventually(
        lambda: (src.name, "default", "secret") in syncs[yes.name].imports, 3, "secret in yes"
    )
    await eventually(
        lambda: (src.name, "default", "public") in syncs[no.name].imports, 3, "public in no"
    )
    assert (src.name, "default", "secret") not in syncs[no.name].imports


async def test_a_cluster_without_heartbeats_turns_unhealthy_but_stays_imported(
    consul_addr: tuple[str, int], names: Callable[[str], str], running: Running
) -> None:
    east, west = Cluster(names("east")), Cluster(names("west"))
    east.synced.set()
    west.synced.set()
    east.exports.append(svc("web"))
    e = running.start(make_sync(Writes().factory(*consul_addr), east))
    w = running.start(make_sync(Writes().factory(*consul_addr), west))
    key = (east.name, "default", "web")
    await eventually(lambda: key in w.imports and w.imports[key].healthy, 3, "web imported")
    assert e.elector is not None
    e.elector.release_on_stop = False  # a crash: the entry stays, the heartbeats stop
    await running.stop(e)
    took = await eventually(lambda: not w.imports[key].healthy, 6, "east judged stale")
    assert took >= 3.0 - 0.6  # the heartbeat TTL, less at most one heartbeat interval + slack
    assert key in w.imports  # still there: a stale cluster is not a deleted one


async def test_a_malformed_entry_is_skipped_and_counted(
    consul_addr: tuple[str, int], names: Callable[[str], str], running: Running
) -> None:
    rogue, east, west = names("rogue"), Cluster(names("east")), Cluster(names("west"))
    east.exports[:] = [svc("web")]
    east.synced.set()
    west.synced.set()
    async with aclient(consul_addr) as client:
        meta = {
            "isthmus-cluster": rogue,
            "isthmus-namespace": "default",
            "isthmus-name": "web",
            "isthmus-ports": "not json",
        }
        service = {
            "ID": "web-default",
            "Service": "web-default",
            "Tags": ["isthmus"],
            "Port": 1,
            "Meta": meta,
        }
        assert await client.catalog.register(f"isthmus-{rogue}", "127.0.0.9", service=service)
        # Importers find a cluster's node by its controller's heartbeat service.
        beat = {
            "ID": "isthmus--controller",
            "Service": "isthmus--controller",
            "Tags": ["isthmus-controller"],
            "Port": 1,
            "Meta": {"isthmus-cluster": rogue},
        }
        assert await client.catalog.register(f"isthmus-{rogue}", "127.0.0.9", service=beat)
    running.start(make_sync(Writes().factory(*consul_addr), east))
    w = running.start(make_sync(Writes().factory(*consul_addr), west))
    await eventually(lambda: (east.name, "default", "web") in w.imports, 3, "the good entry")
    assert w.importer.metrics.bad_entries >= 1
    assert not any(k[0] == rogue for k in w.imports)
