"""The importer: every other cluster's exports, read from Consul with blocking queries.

Run by ``ConsulSync`` (``sync.py``); its map is read by snapshot compilation. It keeps:

- one blocking watch on ``/v1/catalog/services``, which says which services carry the
  ``isthmus`` tag (records.EXPORT_TAG);
- one blocking watch per such service on ``/v1/health/service/<name>``, whose entries
  become ``ImportedService`` values (records.imported_from_entry: our own cluster's
  entries and those exported to other clusters only are left out; malformed ones are
  counted in ``metrics.bad_entries`` and skipped);
- one blocking watch on the heartbeat service, which says whether each remote cluster's
  controller is alive (liveness.py); ``ImportedService.healthy`` is false when the entry's
  checks are not all passing or its cluster's heartbeat is stale.

Every watch follows the reference's rules (blocking.py): index reset to 0 when it goes
backwards, never below 1, a least interval between queries, backoff after errors, and a
read at index 0 right after an error. **An error never removes an import**: only an
answer from Consul that no longer lists a service or an instance does. So while Consul is
unreachable the map stays as it was; ``metrics.errors`` and ``metrics.last_success`` say
how stale it may be.

Readers use ``imports`` (a copy of the map), ``version`` and ``await wait_changed(since)``;
``ready`` is set once the first full read is done (the services list and each listed
service once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from federation.consul.api import ClientFactory, ConsulApi, ConsulError
from federation.consul.blocking import Backoff, Pacer, changed, next_index
from federation.consul.liveness import Liveness
from federation.consul.metrics import ImportMetrics
from federation.consul.records import (
    EXPORT_TAG,
    HEARTBEAT_SERVICE,
    beats_from_entries,
    imported_from_entry,
    with_health,
)
from federation.consul.settings import SyncSettings
from federation.model import ImportedService, consul_service_name

log = logging.getLogger("isthmus.federation.consul.imports")

Key = tuple[str, str, str]  # (cluster, namespace, name)
T = TypeVar("T")


class Importer:
    def __init__(
        self,
        client_factory: ClientFactory,
        cluster: str,
        *,
        settings: SyncSettings | None = None,
    ) -> None:
        self.cluster = cluster
        self.settings = settings or SyncSettings()
        self.metrics = ImportMetrics()
        self.ready = asyncio.Event()
        self._factory = client_factory
        self._imports: dict[Key, ImportedService] = {}
        self._raw: dict[str, dict[Key, ImportedService]] = {}  # per Consul service name
        self._liveness = Liveness()
        self._alive: dict[str, bool] = {}
        self._reachable = True
        self._version = 0
        self._changed = asyncio.Event()
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._unread: set[str] | None = None  # services not read once yet (None: list unread)
        self._tasks: asyncio.TaskGroup | None = None
        self._api: ConsulApi | None = None

    # -- what readers use -------------------------------------------------------------------

    @property
    def imports(self) -> dict[Key, ImportedService]:
        return dict(self._imports)

    @property
    def version(self) -> int:
        return self._version

    @property
    def errors(self) -> int:
        return self.metrics.errors

    @property
    def last_success(self) -> float:
        return self.metrics.last_success

    async def wait_changed(self, since: int) -> int:
        """Wait until ``version`` is above ``since``; returns the new version."""
        while self._version <= since:
            await self._changed.wait()
        return self._version

    def _bump(self) -> None:
        self._version += 1
        self.metrics.imported = len(self._imports)
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    # -- the loops ---------------------------------------------------------------------------

    async def run(self) -> None:
        api = ConsulApi(self._factory(), request_timeout_s=self.settings.request_timeout_s)
        self._api = api
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                tasks.create_task(self._services_loop(api))
                tasks.create_task(self._heartbeat_loop(api))
                tasks.create_task(self._liveness_timer())
        finally:
            self._tasks = self._api = None
            self._watchers.clear()
            await api.close()

    def _ok(self) -> None:
        self.metrics.queries += 1
        self.metrics.last_success = time.time()
        if not self._reachable:
            self._reachable = True
            self._liveness.outage_over(time.monotonic())
            log.info("Consul is reachable again")

    def _failed(self, exc: ConsulError) -> None:
        self.metrics.errors += 1
        if self._reachable:
            log.warning("Consul read failed, keeping the last known imports: %s", exc)
        self._reachable = False

    async def _watch(
        self,
        read: Callable[[int], Awaitable[tuple[int, T]]],
        handle: Callable[[int, int, T], None],
    ) -> None:
        """One blocking-query loop: ``read(index)``, then ``handle(sent, got, data)``."""
        s = self.settings
        pacer = Pacer(s.min_query_interval_s)
        backoff = Backoff(s.backoff_initial_s, s.backoff_max_s)
        index = 0
        while True:
            await asyncio.sleep(pacer.delay(time.monotonic()))
            pacer.started(time.monotonic())
            try:
                got, data = await read(index)
            except ConsulError as exc:
                self._failed(exc)
                index = 0
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            self._ok()
            try:
                handle(index, got, data)
            except (TypeError, AttributeError, KeyError, ValueError) as exc:
                # An answer of an unexpected shape: keep what we had, as after an error.
                self.metrics.bad_entries += 1
                log.warning("unexpected answer from Consul ignored: %r", exc)
            index = next_index(index, got)

    async def _services_loop(self, api: ConsulApi) -> None:
        wait = self.settings.blocking_wait_s
        await self._watch(lambda index: api.services(index, wait), self._on_services)

    def _on_services(self, _sent: int, _got: int, services: dict[str, list[str]]) -> None:
        names = {n for n, tags in services.items() if EXPORT_TAG in tags and n != HEARTBEAT_SERVICE}
        first = self._unread is None
        if first:
            self._unread = set(names)
        for name in sorted(names - self._watchers.keys()):
            self._start_watch(name)
        for name in sorted(self._watchers.keys() - names):
            self._watchers.pop(name).cancel()
            if self._unread is not None:
                self._unread.discard(name)
            self._apply(name, {})
        self.metrics.watched = len(self._watchers)
        self._check_ready()

    def _start_watch(self, name: str) -> None:
        assert self._tasks is not None
        self._watchers[name] = self._tasks.create_task(self._service_loop(name))

    async def _service_loop(self, name: str) -> None:
        wait = self.settings.blocking_wait_s
        api = self._api
        assert api is not None

        def handle(sent: int, got: int, entries: list[dict[str, Any]]) -> None:
            if changed(sent, got):
                self._apply(name, self._parse(name, entries))
            if self._unread is not None and name in self._unread:
                self._unread.discard(name)
                self._check_ready()

        await self._watch(lambda index: api.health_service(name, index, wait), handle)

    def _check_ready(self) -> None:
        if self._unread is not None and not self._unread and not self.ready.is_set():
            self.ready.set()

    def _parse(self, name: str, entries: list[dict[str, Any]]) -> dict[Key, ImportedService]:
        out: dict[Key, ImportedService] = {}
        for entry in entries:
            try:
                found = imported_from_entry(entry, self.cluster)
            except (ValueError, TypeError, AttributeError) as exc:
                self.metrics.bad_entries += 1
                log.warning("skipping an entry of %s: %s", name, exc)
                continue
            if found is None:
                continue
            key, imp = found
            if consul_service_name(imp.namespace, imp.name) != name:
                self.metrics.bad_entries += 1
                log.warning(
                    "skipping %s on cluster %s: its Meta names %s/%s",
                    name,
                    imp.cluster,
                    imp.namespace,
                    imp.name,
                )
                continue
            out.setdefault(key, imp)
        return out

    def _apply(self, name: str, new: dict[Key, ImportedService]) -> None:
        old = self._raw.get(name, {})
        if new == old:
            return
        if new:
            self._raw[name] = new
        else:
            self._raw.pop(name, None)
        for key in old.keys() - new.keys():
            self._imports.pop(key, None)
        for key, imp in new.items():
            self._imports[key] = with_health(imp, self._alive.get(key[0], True))
        self._bump()

    # -- heartbeats ---------------------------------------------------------------------------

    async def _heartbeat_loop(self, api: ConsulApi) -> None:
        wait = self.settings.blocking_wait_s

        def handle(_sent: int, _got: int, entries: list[dict[str, Any]]) -> None:
            self._liveness.observe(beats_from_entries(entries, self.cluster), time.monotonic())
            self._refresh_health()

        await self._watch(lambda index: api.health_service(HEARTBEAT_SERVICE, index, wait), handle)

    async def _liveness_timer(self) -> None:
        while True:
            now = time.monotonic()
            deadline = self._liveness.next_deadline(now)
            delay = 1.0 if deadline is None else min(1.0, max(0.05, deadline - now + 0.01))
            await asyncio.sleep(delay)
            if self._reachable:  # while Consul is unreachable nobody is judged late
                self._refresh_health()

    def _refresh_health(self) -> None:
        alive = self._liveness.alive_map(time.monotonic())
        flipped = {
            c
            for c in alive.keys() | self._alive.keys()
            if alive.get(c, True) != self._alive.get(c, True)
        }
        self._alive = alive
        if not flipped:
            return
        for cluster in sorted(flipped):
            log.info("cluster %s is %s", cluster, "alive" if alive.get(cluster, True) else "stale")
        touched = False
        for entries in self._raw.values():
            for key, imp in entries.items():
                if key[0] in flipped:
                    self._imports[key] = with_health(imp, alive.get(key[0], True))
                    touched = True
        if touched:
            self._bump()
