"""``ConsulSync``: one cluster's exporter, importer and leader elector, wired together.

Built and run by the controller (``federation.controller``). It owns three components, each
with its own py-consul client (so the importer's many held blocking queries never delay a
session renew or a write): ``elector`` (leader.py), ``exporter`` (export.py, writing only
while ``elector`` leads) and ``importer`` (imports.py, on every replica). ``run()`` runs all
three until cancelled; cancelling it releases the leader lock cleanly.

``run()`` never ends on its own: each component runs under ``_supervise``, which logs any
exception that escapes a component's own retry loops (with its traceback, and every
sub-exception of an ``ExceptionGroup``), counts it in ``consul_sync_restarts`` and starts
that component again after a backoff, while the two others carry on. Consul being slow or
unreachable is handled inside the loops (``ConsulError``, retried with backoff); the
supervisor is the last line for anything unforeseen, so the controller never exits because
of Consul.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from federation.consul.api import ClientFactory, client_factory
from federation.consul.blocking import Backoff
from federation.consul.export import Exporter
from federation.consul.imports import Importer, Key
from federation.consul.leader import AlwaysLeader, LeaderElector, default_replica_id
from federation.consul.records import ClusterIdentity
from federation.consul.settings import SyncSettings
from federation.model import ExportedService, ImportedService

log = logging.getLogger("isthmus.federation.consul.sync")

# A component that ran this long before failing starts again without accumulated backoff.
_HEALTHY_RUN_S = 60.0


class ConsulSync:
    def __init__(
        self,
        consul: ClientFactory | str | None,
        *,
        cluster: str,
        gateway_address: str,
        gateway_port: int,
        trust_domain: str,
        locality: str = "",
        exports: Callable[[], Iterable[ExportedService]],
        synced: asyncio.Event,
        settings: SyncSettings | None = None,
        replica_id: str | None = None,
        elect: bool = True,
    ) -> None:
        self.settings = settings or SyncSettings()
        if consul is None or isinstance(consul, str):
            factory = client_factory(consul, connections_limit=self.settings.connections_limit)
        else:
            factory = consul
        self.identity = ClusterIdentity(
            cluster=cluster,
            gateway_address=gateway_address,
            gateway_port=gateway_port,
            trust_domain=trust_domain,
            locality=locality,
        )
        self.replica_id = replica_id or default_replica_id()
        self.elector: LeaderElector | None = (
            LeaderElector(factory, cluster, settings=self.settings, replica_id=self.replica_id)
            if elect
            else None
        )
        self.exporter = Exporter(
            factory,
            self.identity,
            exports,
            synced,
            leadership=self.elector or AlwaysLeader(),
            settings=self.settings,
            replica_id=self.replica_id,
        )
        self.importer = Importer(factory, cluster, settings=self.settings)
        self.restarts = 0  # components restarted after an unexpected error

    def notify(self) -> None:
        """The local exports may have changed."""
        self.exporter.notify()

    @property
    def is_leader(self) -> bool:
        return self.exporter.leadership.is_leader

    @property
    def imports(self) -> dict[Key, ImportedService]:
        return self.importer.imports

    @property
    def version(self) -> int:
        return self.importer.version

    async def wait_changed(self, since: int) -> int:
        return await self.importer.wait_changed(since)

    def metrics(self) -> dict[str, float]:
        out = self.exporter.metrics.as_dict()
        out.update(self.importer.metrics.as_dict())
        if self.elector is not None:
            out.update(self.elector.metrics.as_dict())
        else:
            out["consul_leader"] = 1.0
        out["consul_sync_restarts"] = float(self.restarts)
        return out

    async def run(self) -> None:
        """Run every component until cancelled; see the module doc."""
        async with asyncio.TaskGroup() as tasks:
            if self.elector is not None:
                tasks.create_task(self._supervise("leader election", self.elector.run))
            tasks.create_task(self._supervise("export", self.exporter.run))
            tasks.create_task(self._supervise("import", self.importer.run))

    async def _supervise(self, what: str, run: Callable[[], Awaitable[None]]) -> None:
        s = self.settings
        backoff = Backoff(s.backoff_initial_s, s.backoff_max_s)
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await run()
            except Exception as exc:  # logged in full, then started again
                outcome: BaseException | None = exc
            else:
                outcome = None
            if loop.time() - started >= _HEALTHY_RUN_S:
                backoff.reset()
            delay = backoff.next_delay()
            self.restarts += 1
            if outcome is None:
                log.error("Consul sync %s stopped by itself; starting it again", what)
            else:
                log.error(
                    "Consul sync %s failed (%s); starting it again in %.1fs",
                    what,
                    describe(outcome),
                    delay,
                    exc_info=outcome,
                )
            await asyncio.sleep(delay)


def describe(exc: BaseException) -> str:
    """``Type: message``, with every leaf of an exception group spelled out."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"
