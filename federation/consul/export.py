"""The exporter: keeps this cluster's Consul node equal to its exports, while it leads.

Run by ``ConsulSync`` (``sync.py``). It writes only its own node, ``isthmus-<cluster>``
(records.py has the layout), and only while ``leadership.is_leader``. A pass reads the node
(``/v1/catalog/node/<node>``), diffs it against the desired registrations
(``records.plan``) and writes only what differs, so an unchanged cluster costs one read
and no write, and a restarted controller with the same exports writes nothing. A pass for a
local change that follows a complete pass of the same term skips the read: it writes the
difference between the new desired registrations and the ones that pass left
(``records.plan_changes``); anything edited by hand in between waits for anti-entropy.

A pass runs:

- after a local change: ``notify()`` pokes the exporter; it waits ``debounce_s`` after the
  last poke (at most ``debounce_max_s`` after the first), then writes. The time from the
  first poke to the end of that pass is the sync lag;
- on becoming the leader, and when the local sources report ``synced``;
- every ``anti_entropy_interval_s`` (anti-entropy: entries deleted or edited by hand are
  put back; ``metrics.drift_repairs`` counts those writes);
- after a failed pass, with backoff.

Safety: until ``synced`` (the sources' first full list) is set, a pass only adds missing
services; it never updates or deregisters one, even when the exports list is empty.

The heartbeat: while leader, the exporter rewrites the heartbeat check every
``heartbeat_interval_s`` with a new Output (importers time it against ``heartbeat_ttl_s``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from federation.consul.api import ClientFactory, ConsulApi, ConsulError
from federation.consul.blocking import Backoff
from federation.consul.failures import FailureLog
from federation.consul.leader import AlwaysLeader, Leadership, default_replica_id
from federation.consul.metrics import ExportMetrics
from federation.consul.records import (
    HEARTBEAT_SERVICE,
    ClusterIdentity,
    desired_services,
    heartbeat_check,
    heartbeat_registration,
    plan,
    plan_changes,
)
from federation.consul.settings import SyncSettings
from federation.consul.waiting import wait_at_most
from federation.model import ExportedService

log = logging.getLogger("isthmus.federation.consul.export")

ExportsProvider = Callable[[], Iterable[ExportedService]]


class NotLeader(Exception):
    """Leadership was lost in the middle of a pass."""


class ProviderFailed(Exception):
    """The exports callable raised; the pass wrote nothing."""


class Exporter:
    def __init__(
        self,
        client_factory: ClientFactory,
        identity: ClusterIdentity,
        exports: ExportsProvider,
        synced: asyncio.Event,
        *,
        leadership: Leadership | None = None,
        settings: SyncSettings | None = None,
        replica_id: str | None = None,
    ) -> None:
        self.identity = identity
        self.settings = settings or SyncSettings()
        self.leadership: Leadership = leadership or AlwaysLeader()
        self.replica_id = replica_id or default_replica_id()
        self.metrics = ExportMetrics()
        self._factory = client_factory
        self._exports = exports
        self._synced = synced
        self._wake = asyncio.Event()
        self._pending_since: float | None = None  # first local change not yet in Consul
        self._last_poke = 0.0
        self._beats = 0
        self._term_passes = 0  # passes completed since this replica last became leader
        # The registrations the last pass left on the node when it wrote all it wanted.
        self._written: dict[str, dict[str, Any]] | None = None
        self._conflicts: frozenset[str] = frozenset()

    def notify(self) -> None:
        """The exports may have changed: write them soon (debounced). Call it from the
        event loop's thread."""
        now = time.monotonic()
        if self._pending_since is None:
            self._pending_since = now
        self._last_poke = now
        self._wake.set()

    async def run(self) -> None:
        api = ConsulApi(self._factory(), request_timeout_s=self.settings.request_timeout_s)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._reconcile_loop(api))
                tasks.create_task(self._heartbeat_loop(api))
                tasks.create_task(self._watch_leadership())
                tasks.create_task(self._watch_synced())
        finally:
            await api.close()

    # -- triggers ---------------------------------------------------------------------------

    async def _watch_leadership(self) -> None:
        while True:
            await self.leadership.wait_change()
            self._term_passes = 0
            self._written = None
            if self.leadership.is_leader:
                self._wake.set()

    async def _watch_synced(self) -> None:
        await self._synced.wait()
        self._wake.set()

    async def _debounce(self) -> None:
        first = self._pending_since
        if first is None:
            return
        s = self.settings
        while True:
            now = time.monotonic()
            until = min(self._last_poke + s.debounce_s, first + s.debounce_max_s)
            if now >= until:
                return
            await asyncio.sleep(until - now)

    # -- passes -----------------------------------------------------------------------------

    async def _reconcile_loop(self, api: ConsulApi) -> None:
        s = self.settings
        backoff = Backoff(s.backoff_initial_s, s.backoff_max_s)
        failures = FailureLog(log, f"export of node {self.identity.node}")
        next_pass = time.monotonic()
        while True:
            timeout = max(0.0, next_pass - time.monotonic())
            await wait_at_most(self._wake.wait(), timeout)
            await self._debounce()
            self._wake.clear()
            if not self.leadership.is_leader:
                next_pass = time.monotonic() + s.anti_entropy_interval_s
                continue
            pending, self._pending_since = self._pending_since, None
            try:
                # The first pass of a term is the initial sync; later passes that no local
                # change asked for are anti-entropy, and what they write is drift.
                await self._pass(
                    api, drift=pending is None and self._term_passes > 0, local=pending is not None
                )
            except (ConsulError, NotLeader, ProviderFailed) as exc:
                self._written = None  # some writes may have landed: read the node next time
                if pending is not None:
                    self._pending_since = min(pending, self._pending_since or pending)
                if isinstance(exc, NotLeader):
                    next_pass = time.monotonic() + s.anti_entropy_interval_s
                else:
                    if isinstance(exc, ConsulError):
                        self.metrics.errors += 1
                        failures.failed(exc)
                    next_pass = time.monotonic() + backoff.next_delay()
                continue
            backoff.reset()
            failures.ok()
            self._term_passes += 1
            if pending is not None:
                self.metrics.sync_lag.observe(time.monotonic() - pending)
            next_pass = time.monotonic() + s.anti_entropy_interval_s

    def _desired(self) -> dict[str, dict[str, Any]]:
        try:
            exports = list(self._exports())
        except Exception as exc:
            self.metrics.provider_errors += 1
            log.exception("the exports provider failed; Consul is left as it is")
            raise ProviderFailed from exc
        desired, problems = desired_services(exports, self.identity, self.settings.heartbeat_ttl_s)
        self.metrics.name_conflicts = len(problems)
        if frozenset(problems) != self._conflicts:
            self._conflicts = frozenset(problems)
            for problem in problems:
                log.error("%s", problem)
        self.metrics.exported = len(desired) - 1
        return desired

    async def _pass(self, api: ConsulApi, *, drift: bool, local: bool = False) -> None:
        """One reconciliation. ``local``: a local change asked for it; when the previous
        pass of this term left the node exactly as desired, the node is then not read again
        (thousands of entries for the one that changed): the writes are the difference
        between the new desired state and that one. Every other pass reads the node."""
        desired = self._desired()
        ident = self.identity
        synced = self._synced.is_set()
        written = self._written if local else None
        self._written = None
        if written is not None:
            todo = plan_changes(desired, written)
        else:
            node = await api.node(ident.node)
            todo = plan(desired, node, ident, synced=synced)
        self.metrics.held_back = todo.held_back
        limit = asyncio.Semaphore(self.settings.write_concurrency)

        async def register(reg: dict[str, Any]) -> None:
            async with limit:
                self._check_leader()
                if reg["ID"] == HEARTBEAT_SERVICE:
                    await self._beat(api)
                else:
                    await api.register(ident.node, ident.gateway_address, reg)
                    self.metrics.writes["register_service"] += 1
                if drift:
                    self.metrics.drift_repairs += 1

        async def deregister(sid: str) -> None:
            async with limit:
                self._check_leader()
                await api.deregister(ident.node, sid)
                self.metrics.writes["deregister_service"] += 1
                if drift:
                    self.metrics.drift_repairs += 1

        try:
            async with asyncio.TaskGroup() as writes:
                for reg in todo.register:
                    writes.create_task(register(reg))
                for sid in todo.deregister:
                    writes.create_task(deregister(sid))
        except ExceptionGroup as group:  # one error for the loop: Consul's first, else NotLeader
            _, others = group.split((ConsulError, NotLeader))
            if others is not None:
                raise
            failed = group.subgroup(ConsulError)
            if failed is not None:
                raise failed.exceptions[0] from None
            raise NotLeader from None
        if not todo.empty:
            log.info(
                "node %s: %d registered, %d deregistered",
                ident.node,
                len(todo.register),
                len(todo.deregister),
            )
        self.metrics.reconciles += 1
        self.metrics.last_success = time.time()
        if synced and todo.held_back == 0:
            self._written = desired  # the node now holds exactly this

    def _check_leader(self) -> None:
        if not self.leadership.is_leader:
            raise NotLeader

    # -- heartbeat --------------------------------------------------------------------------

    async def _beat(self, api: ConsulApi) -> None:
        self._beats += 1
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        output = f"heartbeat {self._beats} from replica {self.replica_id} at {stamp}"
        ttl = self.settings.heartbeat_ttl_s
        ident = self.identity
        await api.register(
            ident.node,
            ident.gateway_address,
            heartbeat_registration(ident, ttl),
            heartbeat_check(output, ttl),
        )
        self.metrics.writes["heartbeat"] += 1

    async def _heartbeat_loop(self, api: ConsulApi) -> None:
        s = self.settings
        backoff = Backoff(s.backoff_initial_s, s.backoff_max_s)
        failures = FailureLog(log, f"heartbeat of node {self.identity.node}")
        while True:
            await self.leadership.wait_leader()
            try:
                await self._beat(api)
            except ConsulError as exc:
                self.metrics.errors += 1
                failures.failed(exc)
                delay = backoff.next_delay()
            else:
                backoff.reset()
                failures.ok()
                delay = s.heartbeat_interval_s
            await wait_at_most(self.leadership.wait_change(), delay)
