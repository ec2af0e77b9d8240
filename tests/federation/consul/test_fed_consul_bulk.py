"""A bulk export (a cluster's first pass with hundreds of services): the exporter keeps at
most ``write_concurrency`` writes in flight, writes only its own node, every service
arrives at the other cluster, and a restarted exporter writes none of them again. The
writes are observed on the client (py-consul's methods wrapped), not through the exporter's
own counters."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import consul.aio

from tests.federation.consul.consul_sync_support import (
    FAST,
    Cluster,
    Running,
    eventually,
    make_sync,
    svc,
)

SERVICES = 200
CONCURRENCY = 4


@dataclass
class InFlight:
    """Counts the register/deregister calls of every client it makes, and the most service
    writes (heartbeats aside: their loop writes on its own) awaiting an answer at once."""

    calls: list[tuple[str, str, str, bool]] = field(default_factory=list)
    now: int = 0
    most: int = 0

    def factory(self, host: str, port: int) -> Callable[[], Any]:
        def make() -> Any:
            client = consul.aio.Consul(host=host, port=port, connections_limit=1000)
            register, deregister = client.catalog.register, client.catalog.deregister

            async def tracked(op: str, node: str, sid: str, check: bool, call: Any) -> Any:
                self.calls.append((op, node, sid, check))
                if check:
                    return await call
                self.now += 1
                self.most = max(self.most, self.now)
                try:
                    return await call
                finally:
                    self.now -= 1

            def counted_register(
                node: str, address: str, service: Any = None, check: Any = None, **kw: Any
            ) -> Any:
                sid = (service or {}).get("ID", "")
                call = register(node, address, service=service, check=check, **kw)
                return tracked("register", node, sid, check is not None, call)

            def counted_deregister(node: str, service_id: Any = None, **kw: Any) -> Any:
                call = deregister(node, service_id=service_id, **kw)
                return tracked("deregister", node, service_id or "", False, call)

            client.catalog.register = counted_register
            client.catalog.deregister = counted_deregister
            return client

        return make

    def services(self, op: str) -> list[tuple[str, str]]:
        """(node, service ID) of every ``op`` that was not a heartbeat."""
        return [(n, sid) for o, n, sid, check in self.calls if o == op and not check]


async def test_a_bulk_export_is_bounded_own_node_only_and_not_rewritten_on_restart(
    consul_addr: tuple[str, int], names: Callable[[str], str], running: Running
) -> None:
    settings = dataclasses.replace(FAST, write_concurrency=CONCURRENCY)
    east, west = Cluster(names("east")), Cluster(names("west"))
    east.exports[:] = [svc(f"s{i:03d}", ns=f"ns{i % 7}") for i in range(SERVICES)]
    east.synced.set()
    west.synced.set()
    first = InFlight()
    e = running.start(make_sync(first.factory(*consul_addr), east, settings=settings))
    w = running.start(make_sync(InFlight().factory(*consul_addr), west, settings=settings))
    wanted = {(east.name, f"ns{i % 7}", f"s{i:03d}") for i in range(SERVICES)}
    await eventually(lambda: wanted <= w.imports.keys(), 20, "every service imported")

    node = f"isthmus-{east.name}"
    registered = first.services("register")
    assert len(registered) == SERVICES  # each service written once
    assert {n for n, _sid in registered} == {node}  # and only on its own node
    assert {n for _op, n, _sid, _check in first.calls} == {node}  # heartbeats too
    assert first.most == CONCURRENCY  # the bound was reached, never passed
    assert first.services("deregister") == []

    # A new replica with the same exports: reads the node, writes no service again.
    await running.stop(e)
    again = InFlight()
    second = running.start(make_sync(again.factory(*consul_addr), east, replica="r2"))
    await eventually(lambda: second.is_leader, 5, "the new instance leads")
    passes = second.exporter.metrics.reconciles
    await eventually(lambda: second.exporter.metrics.reconciles >= passes + 3, 5, "3 passes")
    assert again.services("register") == [] and again.services("deregister") == []
    assert wanted <= w.imports.keys()
