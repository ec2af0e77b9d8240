"""The importer: every other cluster's exports, read from Consul with blocking queries.

Run by ``ConsulSync`` (``sync.py``); its map is read by snapshot compilation. It holds one
blocking query per remote cluster, plus one, whatever the number of services:

- one watch on the heartbeat service, ``/v1/health/service/isthmus--controller``: every
  cluster's controller registers it on its node ``isthmus-<cluster>`` (records.py), so its
  entries say which clusters exist and on which node each one publishes, and whether each
  cluster's controller is alive (liveness.py);
- one watch per remote cluster on its node, ``/v1/catalog/node/isthmus-<cluster>``: the
  services on it tagged ``isthmus`` (records.EXPORT_TAG) become ``ImportedService`` values
  (records.imported_from_entry: those exported to other clusters only are left out;
  malformed ones, and any whose Meta names another cluster than the node's, are counted in
  ``metrics.bad_entries`` and skipped). A node answer is decoded straight into the fields
  used (``node_read``), and parsed per service only when the service's ModifyIndex (or the
  node's address) moved, so a read costs O(changes) here beyond the decoding.

Why the node and not one ``/v1/health/service/<name>`` per service (the first design): with
thousands of services that held one connection and one query per service (~6.7k per
importer at 10k services, beyond Consul's default 200 connections per client and this
machine's file limit), and every registration woke the ``/v1/catalog/services`` watch of
every importer, which re-read every name. The node endpoint is not in
``shared/reference/consul-api.md``, but the exporter already relies on it (the shared plan
names it for anti-entropy), py-consul has it (``catalog.node(node, index, wait)``), Consul
serves it as a blocking query, and the embedded catalog wakes its watchers only when that
node changes. What the node answer lacks is checks: an import's ``healthy`` is now its
cluster's liveness, judged from the heartbeat entry, whose checks include the node's own
checks (a node-level critical check marks every import of that cluster unhealthy); a check
hand-added to one exported service is no longer seen (the exporter never registers one).

A cluster's node watch starts when its heartbeat appears and ends only once its
heartbeat is gone **and** Consul answers that the node does not exist (a heartbeat
deleted by hand does not drop a cluster's imports while its node still holds them).

Every watch follows the reference's rules (blocking.py): index reset to 0 when it goes
backwards, never below 1, a least interval between queries (``import_min_interval_s`` for
node reads, which are large), backoff after errors, and a read at index 0 right after an
error. **An error never removes an import**: only an answer from Consul that no longer
lists a service or a node does. So while Consul is unreachable the map stays as it was;
``metrics.errors`` and ``metrics.last_success`` say how stale it may be.

Readers use ``imports`` (a copy of the map), ``version`` and ``await wait_changed(since)``;
``ready`` is set once the first full read is done (the heartbeats and each cluster's node
once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from federation.consul.api import ClientFactory, ConsulApi, ConsulError
from federation.consul.blocking import Backoff, Pacer, changed, next_index
from federation.consul.liveness import Liveness
from federation.consul.metrics import ImportMetrics
from federation.consul.node_read import NodeInfo, NodeService, NodeServices
from federation.consul.records import (
    EXPORT_TAG,
    HEARTBEAT_SERVICE,
    beats_from_entries,
    imported_from_entry,
    with_health,
)
from federation.consul.settings import SyncSettings
from federation.model import META_CLUSTER, ImportedService, consul_service_name

log = logging.getLogger("isthmus.federation.consul.imports")

Key = tuple[str, str, str]  # (cluster, namespace, name)
T = TypeVar("T")

_Parsed = tuple[Key, ImportedService] | None  # None: not for us, or malformed (counted once)


@dataclass(slots=True)
class _Seen:
    """One service of a node as last parsed: what it was parsed from, and the outcome."""

    stamp: tuple[object, ...]
    parsed: _Parsed


class _StopWatch(Exception):
    """A node watch is no longer needed (its cluster and its node are gone)."""


def node_clusters(entries: list[dict[str, Any]], own_cluster: str) -> dict[str, str]:
    """Remote cluster -> the node it publishes on, from the heartbeat service's entries."""
    out: dict[str, str] = {}
    for entry in entries:
        svc: Mapping[str, Any] = entry.get("Service") or {}
        meta: Mapping[str, Any] = svc.get("Meta") or {}
        node: Mapping[str, Any] = entry.get("Node") or {}
        cluster, name = meta.get(META_CLUSTER), node.get("Node")
        if cluster and name and cluster != own_cluster:
            out[str(cluster)] = str(name)
    return out


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
        self._raw: dict[str, dict[Key, ImportedService]] = {}  # per node
        self._seen: dict[str, dict[str, _Seen]] = {}  # node -> service ID -> last parse
        self._liveness = Liveness()
        self._alive: dict[str, bool] = {}
        self._reachable = True
        self._version = 0
        self._changed = asyncio.Event()
        # Every node we import from -> its cluster; kept across restarts of ``run``.
        self._nodes: dict[str, str] = {}
        self._beating: dict[str, str] = {}  # clusters with a heartbeat entry -> node
        self._watchers: dict[str, asyncio.Task[None]] = {}  # per node
        self._unread: set[str] | None = None  # nodes not read once yet (None: beats unread)
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
                tasks.create_task(self._heartbeat_loop(api))
                tasks.create_task(self._liveness_timer())
                for node in sorted(self._nodes):  # after a restart: keep watching them
                    self._start_watch(node)
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

    def _failed(self, exc: Exception) -> None:
        self.metrics.errors += 1
        if self._reachable:
            log.warning("Consul read failed, keeping the last known imports: %s", exc)
        self._reachable = False

    async def _watch(
        self,
        read: Callable[[int], Awaitable[tuple[int, T]]],
        handle: Callable[[int, int, T], None],
        min_interval_s: float,
    ) -> None:
        """One blocking-query loop: ``read(index)``, then ``handle(sent, got, data)``.
        Ends only when ``handle`` raises ``_StopWatch``."""
        s = self.settings
        pacer = Pacer(min_interval_s)
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
            except Exception as exc:  # a bug must cost one query, not the importer
                log.exception("unexpected error reading Consul, retrying")
                self._failed(exc)
                index = 0
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            self._ok()
            try:
                handle(index, got, data)
            except _StopWatch:
                return
            except (TypeError, AttributeError, KeyError, ValueError) as exc:
                # An answer of an unexpected shape: keep what we had, as after an error.
                self.metrics.bad_entries += 1
                log.warning("unexpected answer from Consul ignored: %r", exc)
            index = next_index(index, got)

    # -- discovery and liveness: the heartbeat service ---------------------------------------

    async def _heartbeat_loop(self, api: ConsulApi) -> None:
        wait = self.settings.blocking_wait_s

        def handle(_sent: int, _got: int, entries: list[dict[str, Any]]) -> None:
            self._liveness.observe(beats_from_entries(entries, self.cluster), time.monotonic())
            self._on_clusters(node_clusters(entries, self.cluster))
            self._refresh_health()

        await self._watch(
            lambda index: api.health_service(HEARTBEAT_SERVICE, index, wait),
            handle,
            self.settings.min_query_interval_s,
        )

    def _on_clusters(self, beating: dict[str, str]) -> None:
        self._beating = beating
        first = self._unread is None
        if first:
            self._unread = set()
        for cluster, node in sorted(beating.items()):
            known = self._nodes.get(node)
            if known is not None and known != cluster:
                log.warning("node %s now carries cluster %s (was %s)", node, cluster, known)
            self._nodes[node] = cluster
            if node not in self._watchers:
                assert self._unread is not None
                self._unread.add(node)
                self._start_watch(node)
        self.metrics.watched = len(self._watchers)
        self._check_ready()

    def _start_watch(self, node: str) -> None:
        assert self._tasks is not None
        self._watchers[node] = self._tasks.create_task(self._node_loop(node))

    def _check_ready(self) -> None:
        if self._unread is not None and not self._unread and not self.ready.is_set():
            self.ready.set()

    # -- one remote cluster's node ------------------------------------------------------------

    async def _node_loop(self, node: str) -> None:
        wait = self.settings.blocking_wait_s
        api = self._api
        assert api is not None

        def handle(sent: int, got: int, data: NodeServices | None) -> None:
            if changed(sent, got):
                self._on_node(node, data)
            if self._unread is not None and node in self._unread:
                self._unread.discard(node)
                self._check_ready()
            if data is None and node not in self._beating.values():
                self._nodes.pop(node, None)
                self._seen.pop(node, None)
                raise _StopWatch

        try:
            await self._watch(
                lambda index: api.watch_node(node, index, wait),
                handle,
                self.settings.import_min_interval_s,
            )
        finally:
            if self._watchers.get(node) is asyncio.current_task():
                del self._watchers[node]
                self.metrics.watched = len(self._watchers)

    def _on_node(self, node: str, data: NodeServices | None) -> None:
        cluster = self._nodes.get(node, "")
        if data is None:
            self._seen.pop(node, None)
            self._apply(node, {})
            return
        info = data.Node or NodeInfo()
        before = self._seen.get(node, {})
        now: dict[str, _Seen] = {}
        address = info.Address
        for sid, svc in (data.Services or {}).items():
            if EXPORT_TAG not in (svc.Tags or ()) or sid == HEARTBEAT_SERVICE:
                continue
            stamp = (svc.ModifyIndex, svc.CreateIndex, address)
            seen = before.get(sid)
            if seen is None or seen.stamp != stamp or not svc.ModifyIndex:
                seen = _Seen(stamp, self._parse(cluster, node, info, svc))
            now[sid] = seen
        self._seen[node] = now
        out: dict[Key, ImportedService] = {}
        for seen in now.values():
            if seen.parsed is not None:
                key, imp = seen.parsed
                out.setdefault(key, imp)
        self._apply(node, out)

    def _parse(self, cluster: str, node: str, info: NodeInfo, svc: NodeService) -> _Parsed:
        name = svc.Service
        entry = {"Node": {"Node": info.Node, "Address": info.Address}, "Service": svc.as_entry()}
        try:
            found = imported_from_entry(entry, self.cluster)
        except (ValueError, TypeError, AttributeError) as exc:
            self.metrics.bad_entries += 1
            log.warning("skipping %s on node %s: %s", name, node, exc)
            return None
        if found is None:
            return None
        key, imp = found
        if imp.cluster != cluster:
            self.metrics.bad_entries += 1
            log.warning(
                "skipping %s on node %s: its Meta says cluster %s, the node is %s's",
                name,
                node,
                imp.cluster,
                cluster,
            )
            return None
        if consul_service_name(imp.namespace, imp.name) != name:
            self.metrics.bad_entries += 1
            log.warning(
                "skipping %s on node %s: its Meta names %s/%s",
                name,
                node,
                imp.namespace,
                imp.name,
            )
            return None
        return key, imp

    def _apply(self, node: str, new: dict[Key, ImportedService]) -> None:
        old = self._raw.get(node, {})
        if new == old:
            return
        if new:
            self._raw[node] = new
        else:
            self._raw.pop(node, None)
        for key in old.keys() - new.keys():
            self._imports.pop(key, None)
        for key, imp in new.items():
            if old.get(key) != imp:
                self._imports[key] = with_health(imp, self._alive.get(key[0], True))
        self._bump()

    # -- liveness -------------------------------------------------------------------------------

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
