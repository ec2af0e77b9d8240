"""List-then-watch of one kind, forever, in a thread: the blocking half of the Kubernetes source.

``federation.sources.kube.KubeSource`` runs one :class:`KindWatcher` per kind in its own
thread and gives it a :class:`WatchSink` that hands every result to the event loop. The loop
follows ``../shared/reference/kubernetes-api.md``:

1. **List** (paged with ``limit``/``continue``) at the first apiVersion the server serves;
   hand the whole list to ``sink.replace`` (the store diffs it: a relist deletes only what is
   really gone) and report the kind synced. Remember the list's ``resourceVersion``.
2. **Watch** from that resourceVersion with ``allowWatchBookmarks``; every event's object (and
   every BOOKMARK) advances the remembered resourceVersion. When the stream ends (the server's
   timeout, a dropped connection) watch again from there: no relist.
3. **410 Gone** (an HTTP 410 or an in-stream ERROR event with code 410): the resourceVersion
   is too old, go back to 1.
4. **Connection errors and other failures**: wait (exponential backoff with jitter) and retry
   from the same resourceVersion; the store keeps what it has meanwhile.
5. **404 on a list** (a CRD that is not installed): the kind is empty and counts as synced; it
   is retried every ``missing_retry_s``. **403** (no RBAC for it): synced, objects kept,
   retried likewise. Either is logged once per state change.

Stopping: :meth:`Interrupter.stop` sets the flag every wait checks and shuts down the socket of
every open response, so a thread blocked reading a watch returns at once. Watches also carry
``timeoutSeconds`` and a client read timeout, so a dead connection is noticed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import urllib3
from kubernetes.client.exceptions import ApiException

from federation.sources.backoff import Backoff
from federation.sources.kinds import SourceKind, clean
from federation.sources.kube_client import KubeCalls
from federation.sources.store import StoreKey, key_for

log = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """Timeouts and retry intervals of the Kubernetes source (seconds unless named)."""

    watch_timeout_s: int = 300  # timeoutSeconds of each watch; then it resumes
    read_grace_s: float = 30.0  # client read timeout = watch_timeout_s + this
    connect_timeout_s: float = 10.0
    list_timeout_s: float = 60.0  # read timeout of each list page
    page_size: int = 500  # limit of each list page
    missing_retry_s: float = 30.0  # how often a 404 (no CRD) or 403 kind is retried
    backoff_initial_s: float = 0.5
    backoff_cap_s: float = 30.0
    # A watch that ends sooner without events, or a relist that follows a list sooner, backs off.
    min_watch_s: float = 1.0


class WatchSink(Protocol):
    """Where a watcher's results go (called from its thread)."""

    def replace(self, kind: str, objects: list[Obj]) -> None: ...

    def put(self, obj: Obj) -> None: ...

    def remove(self, key: StoreKey) -> None: ...

    def synced(self, kind: str) -> None: ...


@dataclass(slots=True)
class KindStatus:
    """What one watcher is doing, for status pages and metrics (written by its thread)."""

    kind: str
    state: str = "starting"  # listing | watching | backoff | missing | forbidden | stopped
    api_version: str = ""
    resource_version: str | None = None
    lists: int = 0
    watches: int = 0
    relists: int = 0  # after 410 Gone
    bookmarks: int = 0
    events: int = 0
    errors: int = 0
    last_error: str = ""
    synced: bool = False
    changed_at: float = field(default_factory=time.monotonic)


class Stopped(Exception):
    """The source is stopping."""


class Expired(Exception):
    """410 Gone: the resourceVersion is too old; relist."""


class NotServed(Exception):
    """Every apiVersion of the kind answered 404 (or one answered 403)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Interrupter:
    """The stop flag of every watcher, and the open responses to cut when it is set."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._open: set[Any] = set()

    def wait(self, seconds: float) -> None:
        """Sleep, unless stopping; raises Stopped when stopping."""
        if self.stopping.wait(seconds):
            raise Stopped

    def check(self) -> None:
        if self.stopping.is_set():
            raise Stopped

    @contextlib.contextmanager
    def track(self, response: Any) -> Iterator[None]:
        with self._lock:
            if self.stopping.is_set():
                _close(response)
                raise Stopped
            self._open.add(response)
        try:
            yield
        finally:
            with self._lock:
                self._open.discard(response)
            _close(response)

    def stop(self) -> None:
        with self._lock:
            self.stopping.set()
            for response in self._open:
                _shutdown(response)


def _shutdown(response: Any) -> None:
    """Unblock a thread reading ``response`` (closing alone does not interrupt a recv)."""
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _lines(response: Any) -> Iterator[bytes]:
    """The complete lines of a watch stream as they arrive (a partial last line is dropped:
    the connection broke mid-event)."""
    pending: list[bytes] = []
    for chunk in response.stream(amt=None, decode_content=False):
        if b"\n" not in chunk:
            pending.append(chunk)
            continue
        first, *rest = chunk.split(b"\n")
        pending.append(first)
        yield b"".join(pending)
        yield from rest[:-1]
        pending = [rest[-1]] if rest[-1] else []


def _close(response: Any) -> None:
    with contextlib.suppress(Exception):
        response.close()
    with contextlib.suppress(Exception):
        response.release_conn()


class KindWatcher:
    """Lists then watches one kind until stopped (see the module docstring)."""

    def __init__(
        self,
        calls: KubeCalls,
        kind: SourceKind,
        sink: WatchSink,
        interrupter: Interrupter,
        settings: WatchSettings,
    ) -> None:
        self.calls = calls
        self.kind = kind
        self.sink = sink
        self.interrupter = interrupter
        self.settings = settings
        self.status = KindStatus(kind.kind)
        self.backoff = Backoff(settings.backoff_initial_s, settings.backoff_cap_s)
        self.relist_backoff = Backoff(settings.backoff_initial_s, settings.backoff_cap_s)
        self._listed_at = -1e9  # monotonic time of the last successful list
        self._resource_version: str | None = None
        self._unavailable: int | None = None  # 404 or 403 while not served
        self._failing = False  # since the last failure, no answer from the server yet

    @property
    def resource_version(self) -> str | None:
        return self._resource_version

    def _set_state(self, state: str) -> None:
        if self.status.state != state:
            self.status.state = state
            self.status.changed_at = time.monotonic()

    def run(self) -> None:
        try:
            while True:
                self.interrupter.check()
                self._step()
        except Stopped:
            pass
        finally:
            self._set_state("stopped")

    def _step(self) -> None:
        try:
            if self._resource_version is None:
                self._list()
            self._watch()
        except Expired:
            self._relist("expired (410 in the watch stream)")
        except NotServed as gone:
            self._not_served(gone.status)
        except ApiException as exc:
            if exc.status == 410:
                self._relist("expired (HTTP 410)")
            elif exc.status == 404:
                self._relist("not found (404): the CRD may be gone")
            else:
                self._failed(f"HTTP {exc.status} {exc.reason}".strip())
        except Stopped:
            raise
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # never let the thread die: log and retry
            log.exception("%s: unexpected failure", self.kind.kind)
            self._failed(f"{type(exc).__name__}: {exc}")

    def _relist(self, reason: str) -> None:
        self.status.relists += 1
        log.info("%s: resourceVersion %s %s; relisting", self.kind.kind, self._resource_version,
                 reason)  # fmt: skip
        self._resource_version = None
        if time.monotonic() - self._listed_at < self.settings.min_watch_s:
            # Relisting right after a list: the server keeps refusing; do not spin.
            self.interrupter.wait(self.relist_backoff.next_delay())
        else:
            self.relist_backoff.reset()

    def _failed(self, reason: str) -> None:
        self.interrupter.check()  # a stop cuts the connection: not a failure
        self.status.errors += 1
        self.status.last_error = reason
        first = self.backoff.failures == 0
        delay = self.backoff.next_delay()
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "%s: %s; retrying in %.2fs",
            self.kind.kind,
            reason,
            delay,
        )
        self._failing = True
        self._set_state("backoff")
        self.interrupter.wait(delay)

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("%s: the API server answers again", self.kind.kind)

    def _not_served(self, status: int) -> None:
        self._resource_version = None
        state = "missing" if status == 404 else "forbidden"
        if self._unavailable != status:
            if status == 404:
                log.warning(
                    "%s: not served by the API server (404: is its CRD installed?); treating it "
                    "as empty, retrying every %.1fs",
                    self.kind.kind,
                    self.settings.missing_retry_s,
                )
                self.sink.replace(self.kind.kind, [])
            else:
                log.warning(
                    "%s: forbidden (403: check the controller's RBAC); keeping what we have, "
                    "retrying every %.1fs",
                    self.kind.kind,
                    self.settings.missing_retry_s,
                )
        self._unavailable = status
        self._recovered()
        self.backoff.reset()
        self._set_state(state)
        self._mark_synced()
        self.interrupter.wait(self.settings.missing_retry_s)

    def _mark_synced(self) -> None:
        if not self.status.synced:
            self.status.synced = True
            self.sink.synced(self.kind.kind)

    # -- list -------------------------------------------------------------------------------

    def _versions(self) -> list[str]:
        known = self.status.api_version
        versions = list(self.kind.api_versions)
        if known in versions:
            versions.remove(known)
            versions.insert(0, known)
        return versions

    def _list(self) -> None:
        self._set_state("listing")
        forbidden = False
        for api_version in self._versions():
            try:
                items, resource_version = self._list_at(api_version)
            except ApiException as exc:
                if exc.status == 404:
                    continue
                if exc.status == 403:
                    forbidden = True
                    continue
                raise
            self._recovered()
            self.status.api_version = api_version
            self.status.lists += 1
            objects = []
            for item in items:
                obj = self._clean(item, api_version)
                if obj is not None:
                    objects.append(obj)
            self.interrupter.check()
            self.sink.replace(self.kind.kind, objects)
            self._mark_synced()
            if self._unavailable is not None:
                log.info("%s: served again at %s", self.kind.kind, api_version)
                self._unavailable = None
            self._resource_version = resource_version
            self.status.resource_version = resource_version
            self._listed_at = time.monotonic()
            self.backoff.reset()
            return
        raise NotServed(403 if forbidden else 404)

    def _list_at(self, api_version: str) -> tuple[list[Any], str]:
        items: list[Any] = []
        token: str | None = None
        timeout = (self.settings.connect_timeout_s, self.settings.list_timeout_s)
        while True:
            self.interrupter.check()
            body = self.calls.list_page(
                self.kind,
                api_version,
                limit=self.settings.page_size,
                continue_token=token,
                timeout=timeout,
                track=self.interrupter.track,
            )
            page = body.get("items")
            items.extend(page if isinstance(page, list) else [])
            meta = body.get("metadata")
            meta = meta if isinstance(meta, dict) else {}
            token = meta.get("continue") or None
            if token is None:
                resource_version = meta.get("resourceVersion")
                if not isinstance(resource_version, str) or not resource_version:
                    raise ValueError(f"a list of {self.kind.kind} has no resourceVersion")
                return items, resource_version

    def _clean(self, item: Any, api_version: str) -> Obj | None:
        if not isinstance(item, dict):
            log.warning("%s: ignoring a list item that is not an object", self.kind.kind)
            return None
        obj = clean(item, self.kind, api_version)
        try:
            key_for(obj)
        except ValueError:
            log.warning("%s: ignoring an object without a name", self.kind.kind)
            return None
        return obj

    # -- watch ------------------------------------------------------------------------------

    def _watch(self) -> None:
        assert self._resource_version is not None
        api_version = self.status.api_version
        settings = self.settings
        response = self.calls.call(
            self.kind,
            api_version,
            watch=True,
            resource_version=self._resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=settings.watch_timeout_s,
            _request_timeout=(
                settings.connect_timeout_s,
                settings.watch_timeout_s + settings.read_grace_s,
            ),
        )
        self.status.watches += 1
        self._recovered()
        self._set_state("watching")
        started, events = time.monotonic(), 0
        with self.interrupter.track(response):
            for line in _lines(response):
                self.interrupter.check()
                if not line.strip():
                    continue
                self._handle(json.loads(line), api_version)
                events += 1
                self.backoff.reset()
        self.interrupter.check()
        if events == 0 and time.monotonic() - started < settings.min_watch_s:
            # The server ends our watches at once: do not spin.
            self.interrupter.wait(self.backoff.next_delay())

    def _handle(self, event: Any, api_version: str) -> None:
        if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
            raise ValueError("a watch event is not a JSON object with an object")
        kind, obj = event.get("type"), event["object"]
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Expired
            raise ApiException(status=obj.get("code") or 500, reason=str(obj.get("message", "")))
        meta = obj.get("metadata")
        resource_version = meta.get("resourceVersion") if isinstance(meta, dict) else None
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            cleaned = self._clean(obj, api_version)
            if cleaned is not None:
                self.status.events += 1
                if kind == "DELETED":
                    self.sink.remove(key_for(cleaned))
                else:
                    self.sink.put(cleaned)
        elif kind == "BOOKMARK":
            self.status.bookmarks += 1
        else:
            log.warning("%s: ignoring a watch event of type %r", self.kind.kind, kind)
            return
        if isinstance(resource_version, str) and resource_version:
            self._resource_version = resource_version
            self.status.resource_version = resource_version
