"""Helpers of the Consul sync tests (fixtures are in conftest.py).

``CatalogProc`` is an ``isthmus catalog serve`` process that a test can stop and start again
on the same port. ``Writes`` counts the catalog writes a client makes by wrapping py-consul's
methods, independently of the code under test's own counters. ``Cluster`` is a test cluster
(its exports list and synced event); ``make_sync`` builds a ``ConsulSync`` for it with the
fast ``FAST`` settings; ``Running`` runs and stops them; ``eventually`` polls a condition.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import consul
import consul.aio

from federation.consul import ConsulSync, SyncSettings
from federation.model import ExportedService, ServicePort

ROOT = Path(__file__).resolve().parents[3]
REAL_CONSUL = os.environ.get("CONSUL_HTTP_ADDR", "")

FAST = SyncSettings(
    session_ttl_s=10,  # the shortest Consul allows
    lock_delay_s=1,
    acquire_retry_s=0.1,
    anti_entropy_interval_s=0.5,
    debounce_s=0.02,
    debounce_max_s=0.2,
    heartbeat_interval_s=0.5,
    heartbeat_ttl_s=3.0,
    blocking_wait_s=5,
    min_query_interval_s=0.02,
    import_min_interval_s=0.1,
    backoff_initial_s=0.05,
    backoff_max_s=0.5,
    request_timeout_s=2.0,
)


@dataclass
class CatalogProc:
    """An ``isthmus catalog serve`` process that can be stopped and started again."""

    data: Path
    port: int = 0
    host: str = "127.0.0.1"
    proc: subprocess.Popen[str] | None = None

    def start(self) -> CatalogProc:
        log = self.data.with_suffix(".log").open("a")  # the catalog's stderr, for debugging
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "isthmus",
                "catalog",
                "serve",
                "--listen",
                f"{self.host}:{self.port}",
                "--data",
                str(self.data),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        log.close()
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "serving" not in line:
            self.proc.wait(timeout=10)
            err = self.data.with_suffix(".log").read_text()
            raise RuntimeError(f"catalog did not start: {line!r} {err!r}")
        self.port = urlparse(line.strip().rsplit(" ", 1)[1]).port or 0
        return self

    def stop(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=15) == 0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class Writes:
    """Catalog writes seen by counting clients: (op, node, service_id, with_check)."""

    calls: list[tuple[str, str, str, bool]] = field(default_factory=list)

    def count(self, op: str, *, node: str | None = None, heartbeat: bool | None = None) -> int:
        return sum(
            1
            for o, n, _sid, check in self.calls
            if o == op and (node is None or n == node) and (heartbeat is None or check == heartbeat)
        )

    def factory(self, host: str, port: int) -> Callable[[], Any]:
        def make() -> Any:
            client = consul.aio.Consul(host=host, port=port, connections_limit=1000)
            register, deregister = client.catalog.register, client.catalog.deregister

            def counted_register(
                node: str, address: str, service: Any = None, check: Any = None, **kw: Any
            ) -> Any:
                sid = (service or {}).get("ID", "")
                self.calls.append(("register", node, sid, check is not None))
                return register(node, address, service=service, check=check, **kw)

            def counted_deregister(node: str, service_id: Any = None, **kw: Any) -> Any:
                self.calls.append(("deregister", node, service_id or "", False))
                return deregister(node, service_id=service_id, **kw)

            client.catalog.register = counted_register
            client.catalog.deregister = counted_deregister
            return client

        return make


@dataclass
class Cluster:
    """A test cluster: its exports list (the provider reads it) and its synced event.
    ``broken`` makes the provider raise, as a buggy source would."""

    name: str
    exports: list[ExportedService] = field(default_factory=list)
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    broken: bool = False

    def provider(self) -> list[ExportedService]:
        if self.broken:
            raise RuntimeError("the sources are broken")
        return list(self.exports)


def svc(
    name: str, ns: str = "default", *, port: int = 8080, ready: int = 1, to: tuple[str, ...] = ()
) -> ExportedService:
    return ExportedService(
        namespace=ns,
        name=name,
        ports=(ServicePort(name="http", port=port, app_protocol="http"),),
        ready_endpoints=ready,
        export_to=to,
    )


def make_sync(
    factory: Callable[[], Any],
    cluster: Cluster,
    *,
    replica: str = "r1",
    settings: SyncSettings = FAST,
    gateway: tuple[str, int] = ("127.0.0.10", 15443),
) -> ConsulSync:
    return ConsulSync(
        factory,
        cluster=cluster.name,
        gateway_address=gateway[0],
        gateway_port=gateway[1],
        trust_domain=f"{cluster.name}.local",
        locality=f"region-{cluster.name}/zone-a",
        exports=cluster.provider,
        synced=cluster.synced,
        settings=settings,
        replica_id=f"{cluster.name}-{replica}",
    )


class Running:
    """Runs ConsulSync instances as tasks; ``stop`` cancels one cleanly."""

    def __init__(self) -> None:
        self.tasks: dict[int, asyncio.Task[None]] = {}

    def start(self, sync: ConsulSync) -> ConsulSync:
        self.tasks[id(sync)] = asyncio.create_task(sync.run())
        return sync

    async def stop(self, sync: ConsulSync) -> None:
        task = self.tasks.pop(id(sync))
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    async def stop_all(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        for task in self.tasks.values():
            try:
                await task
            except asyncio.CancelledError:
                pass
        for task in self.tasks.values():
            assert task.cancelled() or task.exception() is None, task.exception()
        self.tasks.clear()


async def eventually(
    cond: Callable[[], bool | Awaitable[bool]], within: float, what: str = "condition"
) -> float:
    """Poll ``cond`` every 20 ms until it holds; returns the seconds it took."""
    start = time.monotonic()
    while True:
        result = cond()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"{what} not reached within {within}s")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def aclient(addr: tuple[str, int]) -> AsyncIterator[Any]:
    async with consul.aio.Consul(host=addr[0], port=addr[1]) as client:
        yield client
