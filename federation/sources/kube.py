"""The Kubernetes source: every kind we read, listed and watched into the :class:`ObjectStore`.

The controller builds it (``isthmus federation run --kubeconfig F | --in-cluster``) with an
``ApiClient`` from ``federation.sources.kube_client.api_client``. The official client is
blocking, so each kind runs a :class:`~federation.sources.kube_watch.KindWatcher` in its own
thread (a dedicated thread, not the default executor, which a dozen never-ending watches would
starve), and every result is handed to the event loop with ``loop.call_soon_threadsafe``,
where it is applied to the store in order. ``store.synced`` is set once every kind finished
its first list (a kind the server does not serve counts as listed and empty).

Usage::

    source = KubeSource(store, api_client(kubeconfig))
    source.start()          # from the event loop
    ...
    await source.stop()     # or: await source.run() until cancelled
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from federation.sources.kinds import SOURCE_KINDS, SourceKind
from federation.sources.kube_client import KubeCalls
from federation.sources.kube_watch import Interrupter, KindStatus, KindWatcher, WatchSettings
from federation.sources.store import ObjectStore, StoreKey

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class KubeSource:
    """See the module docstring. ``name`` prefixes the store's sync names and owns the objects
    (a relist never touches objects another source wrote)."""

    def __init__(
        self,
        store: ObjectStore,
        api: Any,
        *,
        kinds: Iterable[SourceKind] = SOURCE_KINDS,
        settings: WatchSettings | None = None,
        name: str = "kube",
    ) -> None:
        self.store = store
        self.calls = KubeCalls(api)
        self.kinds = tuple(kinds)
        self.settings = settings or WatchSettings()
        self.name = name
        self.origin = f"kubernetes {self.calls.host}"
        self._interrupter = Interrupter()
        self._watchers: list[KindWatcher] = []
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        states = ", ".join(f"{w.kind.kind}={w.status.state}" for w in self._watchers)
        return f"<KubeSource {self.calls.host} [{states}]>"

    def sync_name(self, kind: str) -> str:
        return f"{self.name}/{kind}"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start one watcher thread per kind (call from the event loop, once)."""
        if self._loop is not None:
            raise RuntimeError("the Kubernetes source is already started")
        self._loop = asyncio.get_running_loop()
        for kind in self.kinds:
            self.store.expect(self.sync_name(kind.kind))
        for kind in self.kinds:
            watcher = KindWatcher(self.calls, kind, self, self._interrupter, self.settings)
            thread = threading.Thread(
                target=watcher.run, name=f"kube-watch-{kind.kind}", daemon=True
            )
            self._watchers.append(watcher)
            self._threads.append(thread)
            thread.start()
        log.info("watching %d kinds at %s", len(self.kinds), self.calls.host)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop every watcher and wait for its thread (open watches are cut at once)."""
        self._interrupter.stop()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            remaining = max(0.0, deadline - time.monotonic())
            await asyncio.to_thread(thread.join, remaining)
            if thread.is_alive():
                log.warning("%s did not stop within %.0fs", thread.name, timeout_s)

    async def run(self) -> None:
        """Start, then run until cancelled; stops cleanly."""
        self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self.stop())

    def status(self) -> list[KindStatus]:
        return [w.status for w in self._watchers]

    def resource_version(self, kind: str) -> str | None:
        for watcher in self._watchers:
            if watcher.kind.kind == kind:
                return watcher.resource_version
        return None

    # -- WatchSink: called from the watcher threads -------------------------------------------

    def replace(self, kind: str, objects: list[Obj]) -> None:
        pairs = [(obj, self.origin) for obj in objects]
        self._post(lambda: self.store.replace([kind], pairs, source=self.name))

    def put(self, obj: Obj) -> None:
        self._post(lambda: self.store.put(obj, source=self.name, origin=self.origin))

    def remove(self, key: StoreKey) -> None:
        self._post(lambda: self.store.remove(*key, source=self.name))

    def synced(self, kind: str) -> None:
        self._post(lambda: self.store.mark_synced(self.sync_name(kind)))

    def _post(self, apply: Callable[[], object]) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._apply, apply)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._interrupter.stop()

    @staticmethod
    def _apply(apply: Callable[[], object]) -> None:
        try:
            apply()
        except Exception:  # one bad event must not stop the others
            log.exception("applying a Kubernetes event to the store failed")
