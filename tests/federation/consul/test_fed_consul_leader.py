"""Leader election between two replicas of one cluster: only the leader writes, and the
other takes over on a clean stop (at once) and on a crash (within TTL + lock delay)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from federation.consul import ConsulSync
from tests.federation.consul.consul_sync_support import (
    FAST,
    REAL_CONSUL,
    Cluster,
    Running,
    Writes,
    eventually,
    make_sync,
    svc,
)


async def _pair(
    consul_addr: tuple[str, int], cluster: Cluster, running: Running
) -> tuple[dict[str, ConsulSync], dict[str, Writes]]:
    writes = {"r1": Writes(), "r2": Writes()}
    syncs = {
        r: running.start(make_sync(writes[r].factory(*consul_addr), cluster, replica=r))
        for r in ("r1", "r2")
    }
    await eventually(lambda: any(s.is_leader for s in syncs.values()), 5, "a leader")
    return syncs, writes


async def test_only_the_leader_writes_and_a_clean_stop_hands_over_at_once(
    consul_addr: tuple[str, int], names: Callable[[str], str], running: Running
) -> None:
    east, west = Cluster(names("east")), Cluster(names("west"))
    east.exports[:] = [svc("web")]
    east.synced.set()
    west.synced.set()
    syncs, writes = await _pair(consul_addr, east, running)
    w = running.start(make_sync(Writes().factory(*consul_addr), west))
    key = (east.name, "default", "web")
    await eventually(lambda: key in w.imports, 3, "web imported")

    leader = next(r for r, s in syncs.items() if s.is_leader)
    standby = "r2" if leader == "r1" else "r1"
    # Both replicas pass through several anti-entropy and heartbeat rounds.
    passes = syncs[leader].exporter.metrics.reconciles
    await eventually(lambda: syncs[leader].exporter.metrics.reconciles >= passes + 3, 5, "passes")
    assert not syncs[standby].is_leader
    assert writes[leader].count("register", heartbeat=True) >= 2
    assert writes[standby].calls == []  # the standby never wrote
    # Every replica imports, leader or not.
    east_other = (west.name, "default", "api")
    west.exports[:] = [svc("api")]
    w.notify()
    await eventually(lambda: all(east_other in s.imports for s in syncs.values()), 3, "both import")

    await running.stop(syncs[leader])  # a clean stop releases the lock: no lock delay
    took = await eventually(lambda: syncs[standby].is_leader, 3, "the standby takes over")
    assert took < 1.0 + FAST.acquire_retry_s
    await eventually(lambda: writes[standby].count("register") > 0, 3, "the new leader writes")
    assert writes[standby].count("deregister") == 0
    assert key in w.imports and w.imports[key].healthy


async def test_a_crashed_leader_is_replaced_within_ttl_plus_lock_delay(
    consul_addr: tuple[str, int], names: Callable[[str], str], running: Running
) -> None:
    east = Cluster(names("east"))
    east.exports[:] = [svc("web")]
    east.synced.set()
    syncs, writes = await _pair(consul_addr, east, running)
    leader = next(r for r, s in syncs.items() if s.is_leader)
    standby = "r2" if leader == "r1" else "r1"
    elector = syncs[leader].elector
    assert elector is not None

    elector.release_on_stop = False  # a crash: no release, the session is left to expire
    crashed = time.monotonic()
    await running.stop(syncs[leader])
    standby_writes = len(writes[standby].calls)

    # The standby must stay a standby while the dead leader's session lives...
    ttl, delay = FAST.session_ttl_s, FAST.lock_delay_s
    bound = (2 * ttl if REAL_CONSUL else ttl) + delay  # Consul may take up to 2x the TTL
    while not syncs[standby].is_leader and time.monotonic() - crashed < bound + 1.5:
        assert len(writes[standby].calls) == standby_writes
        await asyncio.sleep(0.05)
    took = time.monotonic() - crashed
    assert syncs[standby].is_leader, f"no takeover within {took:.1f}s"
    # ...and take over within TTL + lock delay (+ the standby's polling, 0.1 s, and slack).
    assert took <= bound + 1.0, took
    if not REAL_CONSUL:  # the session lived at least 2/3 TTL past its last renew
        assert took >= ttl * 2 / 3
    await eventually(lambda: writes[standby].count("register") > 0, 3, "the new leader writes")
