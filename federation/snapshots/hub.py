"""The snapshot hub: the controller's current inputs and every proxy's compiled snapshot.

The controller (``federation.controller``) calls :meth:`SnapshotHub.update` with the local
objects and the imports each time either changes; the snapshot server
(``federation.snapshots.server``) calls :meth:`SnapshotHub.poll` for each long-poll and
:meth:`SnapshotHub.report` for each status report. Everything runs on one event loop.

Updates are debounced (:class:`~federation.snapshots.debounce.Debouncer`: 100 ms of quiet,
at most 2 s): a *recompile* then publishes the latest inputs as a new generation, compiles
the snapshot of every proxy shape already known (proxies that differ only by id share one
compilation) and wakes the waiting polls. A poll answers as soon as its proxy's snapshot has
a version other than the one it asked with; polls of proxies whose snapshot did not change
keep waiting. When a compilation fails, that proxy keeps its last good snapshot and the
error is shown in ``/v1/proxies``.

Push metrics: ``pushes`` counts snapshots sent to a proxy that already had another version;
the push latency is the time from the first change of the generation being sent (the
first ``update`` after the previous recompile) to the moment it is sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from federation.model import ImportedService
from federation.snapshots.clustersets import ImportKey
from federation.snapshots.compile import CompileCache, ProxyInfo, compile_for
from federation.snapshots.debounce import Debouncer
from federation.snapshots.registry import ProxyRegistry
from gateway.config.delta import Indexed, diff, encode_delta
from gateway.config.errors import ConfigError
from gateway.config.resources import Resources
from gateway.config.snapshot import Snapshot

log = logging.getLogger("isthmus.federation.snapshots")


class CompileFn(Protocol):
    def __call__(
        self,
        proxy: ProxyInfo,
        resources: Resources,
        imports: Mapping[ImportKey, ImportedService],
        cluster: str,
        *,
        versioned: bool = True,
        cache: CompileCache | None = None,
        service_exports: Sequence[Obj] = (),
        gateway_port: int = 15443,
        trust_domain: str = "cluster.local",
    ) -> Snapshot: ...


@dataclass(slots=True)
class PushStats:
    recompiles: int = 0  # generations published
    compilations: int = 0  # proxy shapes compiled
    deltas: int = 0  # deltas encoded (each served to every proxy moving between two versions)
    compile_errors: int = 0
    pushes: int = 0
    push_latency_sum_s: float = 0.0
    push_latency_max_s: float = 0.0
    last_push_latency_s: float | None = None
    observers: list[Callable[[float], None]] = field(default_factory=list)

    def pushed(self, latency_s: float) -> None:
        self.pushes += 1
        self.push_latency_sum_s += latency_s
        self.push_latency_max_s = max(self.push_latency_max_s, latency_s)
        self.last_push_latency_s = latency_s
        for observe in self.observers:
            observe(latency_s)

    def to_json(self) -> dict[str, Any]:
        return {
            "recompiles": self.recompiles,
            "compilations": self.compilations,
            "compile_errors": self.compile_errors,
            "deltas": self.deltas,
            "pushes": self.pushes,
            "push_latency_sum_s": self.push_latency_sum_s,
            "push_latency_max_s": self.push_latency_max_s,
            "last_push_latency_s": self.last_push_latency_s,
        }


@dataclass(slots=True)
class _Compiled:
    generation: int
    indexed: Indexed | None  # the last good snapshot
    error: str = ""
    # Recent good snapshots of this shape by version, oldest first, ``indexed`` last: a
    # proxy that holds one of them gets a delta. They share every unchanged cluster object
    # (``Indexed.versioned``), so each costs only what changed.
    history: dict[str, Indexed] = field(default_factory=dict)

    @property
    def snapshot(self) -> Snapshot | None:
        return self.indexed.snapshot if self.indexed is not None else None


Shape = ProxyInfo  # with an empty id: what a snapshot depends on
Obj = dict[str, Any]
# What a compilation reads: the cluster's objects, the imports, the ServiceExport objects.
_Inputs = tuple[Resources, Mapping[ImportKey, ImportedService], tuple[Obj, ...]]


class SnapshotHub:
    def __init__(
        self,
        cluster: str,
        *,
        compile: CompileFn = compile_for,
        gateway_port: int = 15443,
        trust_domain: str = "cluster.local",
        quiet_s: float = 0.1,
        max_delay_s: float = 2.0,
        history: int = 4,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.cluster = cluster
        self.registry = ProxyRegistry(wall)
        self.stats = PushStats()
        self.generation = 0
        self._compile = compile
        self.gateway_port = gateway_port  # where the eastwest role listens
        self.trust_domain = trust_domain  # the cluster's, for sidecars' nodes
        self._clock = clock
        self._debouncer = Debouncer(
            self._recompile, quiet_s=quiet_s, max_delay_s=max_delay_s, clock=clock
        )
        self._pending: _Inputs | None = None
        self._pending_since: float | None = None
        self._inputs: _Inputs | None = None
        self._changed_at = 0.0  # first change of the current generation (monotonic)
        self._compiled: dict[Shape, _Compiled] = {}
        self._history = history
        self._cache = CompileCache()  # what the next compilation may reuse
        self._wake = asyncio.Event()
        self._closed = False

    # -- inputs --------------------------------------------------------------------------------

    def update(
        self,
        resources: Resources,
        imports: Mapping[ImportKey, ImportedService],
        service_exports: Sequence[Obj] = (),
    ) -> None:
        """New inputs; published after the debounce. Call from the hub's event loop."""
        held = self._pending or self._inputs
        if held is not None and held[1] == imports:
            # The same imports: the very mapping the compile cache last saw, so that it
            # knows them unchanged without comparing them again.
            self._pending = (resources, held[1], tuple(service_exports))
        else:
            self._pending = (resources, dict(imports), tuple(service_exports))
        if self._pending_since is None:
            self._pending_since = self._clock()
        self._debouncer.poke()

    def flush(self) -> None:
        """Publish pending inputs now (tests; a controller that must not wait)."""
        self._debouncer.flush()

    def _recompile(self) -> None:
        if self._pending is None:
            return
        self._inputs, self._pending = self._pending, None
        self._changed_at = self._pending_since if self._pending_since is not None else 0.0
        self._pending_since = None
        self.generation += 1
        self.stats.recompiles += 1
        for shape in list(self._compiled):
            self._refresh(shape)
        self._notify()

    def _notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    # -- per proxy -----------------------------------------------------------------------------

    def _refresh(self, shape: Shape) -> _Compiled:
        entry = self._compiled.get(shape)
        if entry is not None and entry.generation == self.generation:
            return entry
        previous = entry.indexed if entry is not None else None
        history = entry.history if entry is not None else {}
        if self._inputs is None:
            entry = _Compiled(self.generation, None)
        else:
            resources, imports, service_exports = self._inputs
            info = shape
            self.stats.compilations += 1
            try:
                # Versioned below, reusing the previous snapshot's cluster digests.
                compiled = self._compile(
                    info,
                    resources,
                    imports,
                    self.cluster,
                    versioned=False,
                    cache=self._cache,
                    service_exports=service_exports,
                    gateway_port=self.gateway_port,
                    trust_domain=self.trust_domain,
                )
                entry = _Compiled(
                    self.generation, Indexed.versioned(compiled, previous), history=history
                )
            except ConfigError as exc:
                entry = _Compiled(self.generation, previous, str(exc), history)
            except Exception as exc:  # a bug must not take every proxy down
                log.exception("compiling the snapshot of %s proxies failed", shape.role)
                entry = _Compiled(self.generation, previous, f"internal error: {exc!r}", history)
            if entry.error:
                self.stats.compile_errors += 1
                log.error(
                    "snapshot for %s proxies (%s/%s) does not compile; keeping %s: %s",
                    shape.role,
                    shape.namespace,
                    shape.workload,
                    previous.version if previous else "nothing",
                    entry.error,
                )
            elif entry.indexed is not None:
                self._remember(entry, entry.indexed)
        self._compiled[shape] = entry
        return entry

    def _remember(self, entry: _Compiled, indexed: Indexed) -> None:
        history = entry.history
        history.pop(indexed.version, None)
        history[indexed.version] = indexed
        while len(history) > self._history:
            del history[next(iter(history))]

    def delta_pair(
        self, info: ProxyInfo, base: str, snapshot: Snapshot
    ) -> tuple[Indexed, Indexed] | None:
        """``base`` and ``snapshot`` (``info``'s current one), indexed, when ``base`` is a
        recent version of ``info``'s snapshot; None when it is not (the proxy then gets the
        whole snapshot)."""
        entry = self._refresh(info.shape())
        old = entry.history.get(base)
        new = entry.indexed
        if old is None or new is None or new.snapshot is not snapshot or base == new.version:
            return None
        return old, new

    def encode_delta(self, old: Indexed, new: Indexed) -> bytes:
        """The :class:`~gateway.config.delta.SnapshotDelta` from ``old`` to ``new``, encoded
        (the server encodes each once: proxies of one shape move between the same versions)."""
        self.stats.deltas += 1
        return encode_delta(diff(old, new))

    def snapshot_for(self, info: ProxyInfo) -> Snapshot | None:
        """The snapshot ``info`` should run now (None before the first good compilation)."""
        return self._refresh(info.shape()).snapshot

    def compile_error(self, info: ProxyInfo) -> str:
        return self._refresh(info.shape()).error

    async def wait_snapshot(
        self, info: ProxyInfo, known_version: str, timeout_s: float
    ) -> Snapshot | None:
        """``info``'s snapshot once its version differs from ``known_version``; None when
        ``timeout_s`` passes first (or the hub closes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            snapshot = self.snapshot_for(info)
            if snapshot is not None and snapshot.version != known_version:
                return snapshot
            remaining = deadline - loop.time()
            if self._closed or remaining <= 0:
                return None
            wake = self._wake
            try:
                async with asyncio.timeout(remaining):
                    await wake.wait()
            except TimeoutError:
                return None

    async def poll(self, info: ProxyInfo, known_version: str, timeout_s: float) -> Snapshot | None:
        """One long-poll of a proxy: :meth:`wait_snapshot` with the bookkeeping."""
        self.registry.poll_started(info, known_version)
        snapshot: Snapshot | None = None
        try:
            snapshot = await self.wait_snapshot(info, known_version, timeout_s)
        finally:
            self.registry.poll_ended(info.id, snapshot.version if snapshot else None)
        if snapshot is not None and known_version:
            self.stats.pushed(max(0.0, self._clock() - self._changed_at))
        return snapshot

    def report(self, proxy_id: str, version: str, applied: bool, error: str) -> None:
        self.registry.report(proxy_id, version, applied, error)
        if applied:
            log.debug("proxy %s applied %s", proxy_id, version)  # one per proxy per change
        else:
            log.warning("proxy %s refused %s: %s", proxy_id, version, error)

    def proxies_json(self) -> dict[str, Any]:
        proxies = []
        for record in self.registry.records():
            entry = self._refresh(record.info.shape())
            target = entry.snapshot.version if entry.snapshot else ""
            proxies.append(self.registry.describe(record, target, entry.error))
        return {
            "cluster": self.cluster,
            "generation": self.generation,
            "proxies": proxies,
            "push": self.stats.to_json(),
        }

    async def aclose(self) -> None:
        """Answer every waiting poll now and stop debouncing."""
        self._closed = True
        await self._debouncer.aclose()
        self._notify()
