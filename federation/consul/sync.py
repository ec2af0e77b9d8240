"""``ConsulSync``: one cluster's exporter, importer and leader elector, wired together.

Built and run by the controller (``federation.controller``). It owns three components, each
with its own py-consul client (so the importer's many held blocking queries never delay a
session renew or a write): ``elector`` (leader.py), ``exporter`` (export.py, writing only
while ``elector`` leads) and ``importer`` (imports.py, on every replica). ``run()`` runs all
three until cancelled; cancelling it releases the leader lock cleanly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from federation.consul.api import ClientFactory, client_factory
from federation.consul.export import Exporter
from federation.consul.imports import Importer, Key
from federation.consul.leader import AlwaysLeader, LeaderElector, default_replica_id
from federation.consul.records import ClusterIdentity
from federation.consul.settings import SyncSettings
from federation.model import ExportedService, ImportedService


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
        return out

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            if self.elector is not None:
                tasks.create_task(self.elector.run())
            tasks.create_task(self.exporter.run())
            tasks.create_task(self.importer.run())
