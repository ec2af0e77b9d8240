"""Leader election among a cluster's controller replicas: a Consul session and a KV lock.

Run by ``ConsulSync`` (``sync.py``); read by ``export`` (only the leader writes). Each
replica's ``LeaderElector.run()``:

- creates a session (``TTL`` = ``session_ttl_s``, ``LockDelay`` = ``lock_delay_s``,
  ``Behavior: release``) and renews it every TTL/3;
- watches the key ``isthmus/<cluster>/leader`` with blocking reads; while the key has no
  holder it tries ``?acquire=<session>`` (the value is the replica id), retrying every
  ``acquire_retry_s`` while Consul refuses because of the lock delay;
- is the leader while the key's ``Session`` is its own **and** its last successful renew
  is recent (sent less than 0.8 TTL ago), so a replica cut off from Consul stops writing
  before its session can lapse and another replica can take over;
- when Consul says the session is gone (renew answers 404) it steps down and starts again
  with a new session;
- on a clean stop (its task cancelled, ``release_on_stop`` true) it releases the lock
  (``?release=`` sets no lock delay, so a standby takes over at once) and destroys the
  session. A crash leaves the session to expire: a standby takes over within the TTL
  plus the lock delay (Consul itself may take up to twice the TTL to invalidate it).

``AlwaysLeader`` is the single-replica stand-in with the same interface.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from typing import Protocol

from federation.consul.api import ClientFactory, ConsulApi, ConsulError
from federation.consul.blocking import Backoff, Pacer, next_index
from federation.consul.failures import FailureLog
from federation.consul.metrics import LeaderMetrics
from federation.consul.settings import SyncSettings

log = logging.getLogger("isthmus.federation.consul.leader")

STALE_FRACTION = 0.8  # of the TTL: a renew older than this no longer vouches for the lock


class Leadership(Protocol):
    """What the exporter needs to know about leadership."""

    @property
    def is_leader(self) -> bool: ...

    async def wait_leader(self) -> None: ...

    async def wait_change(self) -> None: ...


class AlwaysLeader:
    """A single replica: always the leader."""

    is_leader = True

    async def wait_leader(self) -> None:
        return None

    async def wait_change(self) -> None:
        await asyncio.Event().wait()


class SessionLost(Exception):
    """Consul no longer knows our session."""


def default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class LeaderElector:
    def __init__(
        self,
        client_factory: ClientFactory,
        cluster: str,
        *,
        settings: SyncSettings | None = None,
        replica_id: str | None = None,
        key: str | None = None,
    ) -> None:
        self.settings = settings or SyncSettings()
        self.cluster = cluster
        self.key = key or f"isthmus/{cluster}/leader"
        self.replica_id = replica_id or default_replica_id()
        self.release_on_stop = True  # False: behave like a crash (tests)
        self.metrics = LeaderMetrics()
        self.session_id: str | None = None
        self._factory = client_factory
        self._holds = False
        self._fresh = False
        self._leader = asyncio.Event()
        self._flip = asyncio.Event()

    # -- what others read ----------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    async def wait_leader(self) -> None:
        await self._leader.wait()

    async def wait_change(self) -> None:
        await self._flip.wait()

    def _set(self, *, holds: bool | None = None, fresh: bool | None = None) -> None:
        if holds is not None:
            self._holds = holds
        if fresh is not None:
            self._fresh = fresh
        now_leader = self._holds and self._fresh
        if now_leader == self.is_leader:
            return
        if now_leader:
            self._leader.set()
        else:
            self._leader.clear()
        self.metrics.is_leader = now_leader
        self.metrics.transitions += 1
        flip, self._flip = self._flip, asyncio.Event()
        flip.set()
        log.info(
            "%s leadership of %s (replica %s)",
            "gained" if now_leader else "lost",
            self.cluster,
            self.replica_id,
        )

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        api = ConsulApi(self._factory(), request_timeout_s=self.settings.request_timeout_s)
        try:
            while True:
                sid = await self._create_session(api)
                try:
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self._renew_loop(api, sid))
                        tasks.create_task(self._lock_loop(api, sid))
                except* SessionLost:
                    log.warning("session %s of replica %s was invalidated", sid, self.replica_id)
                    self.session_id = None
                    self._set(holds=False, fresh=False)
        finally:
            held = self._holds
            self._set(holds=False, fresh=False)
            last, self.session_id = self.session_id, None
            if last is not None and self.release_on_stop:
                try:
                    async with asyncio.timeout(5.0):
                        await self._resign(api, last, held)
                except (ConsulError, TimeoutError) as exc:
                    log.warning("could not resign cleanly (the session will expire): %s", exc)
            await api.close()

    async def _resign(self, api: ConsulApi, sid: str, held: bool) -> None:
        if held:
            await api.kv_release(self.key, self.replica_id, sid)
        await api.session_destroy(sid)

    async def _create_session(self, api: ConsulApi) -> str:
        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        failures = FailureLog(log, f"session creation for {self.key}")
        while True:
            try:
                sid = await api.session_create(
                    f"isthmus-{self.cluster} leader {self.replica_id}",
                    self.settings.session_ttl_s,
                    self.settings.lock_delay_s,
                )
            except ConsulError as exc:
                self.metrics.errors += 1
                failures.failed(exc)
                await asyncio.sleep(backoff.next_delay())
                continue
            failures.ok()
            self.metrics.sessions_created += 1
            self.session_id = sid
            self._set(fresh=True)
            return sid

    async def _renew_loop(self, api: ConsulApi, sid: str) -> None:
        ttl = self.settings.session_ttl_s
        failures = FailureLog(log, f"renewal of session {sid}")
        last_ok = time.monotonic()  # the session was just created
        while True:
            fresh = time.monotonic() - last_ok < ttl * STALE_FRACTION
            await asyncio.sleep(ttl / 3 if fresh else min(1.0, ttl / 10))
            sent = time.monotonic()
            try:
                known = await api.session_renew(sid, timeout_s=ttl / 4)
            except ConsulError as exc:
                self.metrics.errors += 1
                failures.failed(exc)
            else:
                if not known:
                    raise SessionLost(sid)
                failures.ok()
                last_ok = sent
            self._set(fresh=time.monotonic() - last_ok < ttl * STALE_FRACTION)

    async def _lock_loop(self, api: ConsulApi, sid: str) -> None:
        s = self.settings
        pacer = Pacer(s.min_query_interval_s)
        backoff = Backoff(s.backoff_initial_s, s.backoff_max_s)
        failures = FailureLog(log, f"watch of {self.key}")
        index = 0
        while True:
            await asyncio.sleep(pacer.delay(time.monotonic()))
            pacer.started(time.monotonic())
            try:
                got, entry = await api.kv_get(self.key, index, min(s.blocking_wait_s, 30))
                holder = entry.get("Session") if entry else None
                if holder == sid:
                    self._set(holds=True)
                elif holder is not None:
                    self._set(holds=False)
                else:
                    self._set(holds=False)
                    if await api.kv_acquire(self.key, self.replica_id, sid):
                        self._set(holds=True)
                    else:  # still under lock delay, or someone was faster
                        await asyncio.sleep(s.acquire_retry_s)
                    index = 0  # read the key again at once
                    continue
            except ConsulError as exc:
                self.metrics.errors += 1
                failures.failed(exc)
                index = 0  # after an error, read at once instead of blocking on a stale index
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            failures.ok()
            index = next_index(index, got)
