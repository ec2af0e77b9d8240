"""Consul outages: the catalog process is stopped and started again on the same port (it
persists with ``--data``). Imports keep their last state throughout, nothing is judged
stale, and everything converges within seconds once the catalog is back."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.federation.consul.consul_sync_support import (
    CatalogProc,
    Cluster,
    Running,
    Writes,
    eventually,
    make_sync,
    svc,
)


async def _outage(catalog: CatalogProc, running: Running, seconds: float) -> None:
    east, west = Cluster("east"), Cluster("west")
    east.exports[:] = [svc("web")]
    east.synced.set()
    west.synced.set()
    addr = (catalog.host, catalog.port)
    east_writes = Writes()
    e = running.start(make_sync(east_writes.factory(*addr), east))
    w = running.start(make_sync(Writes().factory(*addr), west))
    web, late = ("east", "default", "web"), ("east", "default", "late")
    await eventually(lambda: web in w.imports and w.imports[web].healthy, 3, "web imported")
    before, version = w.imports, w.version

    catalog.stop()
    down = time.monotonic()
    # A local change during the outage: written once Consul is back.
    east.exports.append(svc("late"))
    e.notify()
    while time.monotonic() - down < seconds:
        assert w.imports == before and w.version == version  # nothing lost, nothing stale
        await asyncio.sleep(0.1)
    assert w.importer.errors > 0 and e.exporter.metrics.errors > 0
    assert east_writes.count("deregister") == 0

    catalog.start()  # same port, same data file
    took = await eventually(lambda: late in w.imports, 10, "the change made during the outage")
    assert took < 5.0, took
    assert w.imports[web] == before[web]  # still healthy, never dropped
    assert w.imports[late].healthy
    assert e.is_leader
    # The pass that wrote it may still be finishing (a write over a pooled connection to the
    # old process fails once and is retried) when the import, one read away, already shows it.
    await eventually(lambda: e.exporter.metrics.sync_lag.count > 0, 5, "the pass that wrote it")
    assert e.exporter.metrics.sync_lag.last_s >= seconds  # the change waited out the outage
    assert east_writes.count("deregister") == 0


async def test_a_short_outage_keeps_imports_and_converges(
    restartable_catalog: CatalogProc, running: Running
) -> None:
    await _outage(restartable_catalog, running, 2.0)


@pytest.mark.slow
async def test_a_30s_outage_keeps_imports_and_converges(
    restartable_catalog: CatalogProc, running: Running
) -> None:
    # Longer than the session TTL (the leader steps down while cut off and leads again
    # once its session, restored from the data file, renews) and the heartbeat TTL.
    await _outage(restartable_catalog, running, 30.0)
