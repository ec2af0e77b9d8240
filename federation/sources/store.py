"""The cluster's current objects, as the sources see them: one :class:`ObjectStore` per controller.

Written by the sources (``federation.sources.kube`` through the event loop,
``federation.sources.directory``); read by ``federation.exports`` (``items``), the snapshot
compiler (``resources``) and the controller (``synced``, ``wait_changed``, ``problems``).

- Objects are raw dicts keyed by :class:`StoreKey` ``(kind, namespace, name)``; the namespace
  is ``""`` for cluster-scoped kinds and defaults to ``default`` otherwise.
- A write that changes nothing meaningful (only ``metadata.resourceVersion``, or only the
  ``status`` of a configuration kind, which the proxy never reads) is absorbed silently: no
  new version, no change event. A relist therefore churns nothing.
- :meth:`ObjectStore.replace` is a source's full relist of some kinds: it deletes only what
  the list no longer has and updates only what changed.
- ``synced`` is set once every name passed to :meth:`ObjectStore.expect` (one per kind per
  source) was passed to :meth:`ObjectStore.mark_synced`; it is never cleared.
- :meth:`ObjectStore.resources` validates the configuration kinds as
  ``gateway.config.loader.load_objects`` does (``federation.sources.validation``), one object
  at a time with the result cached until the object changes; invalid objects are logged
  once, listed in ``problems()`` and skipped.

Not thread-safe: call it from the event loop only (the Kubernetes source's threads hand their
events over with ``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from federation.sources.kinds import is_namespaced
from federation.sources.validation import validate_one
from gateway.config.errors import Problem
from gateway.config.kinds import KINDS, Object, ProxySettings
from gateway.config.resources import ObjectKey, Origin, Resources, key_of

log = logging.getLogger(__name__)

Obj = dict[str, Any]
ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]


class StoreKey(NamedTuple):
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        if self.namespace:
            return f"{self.kind} {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class StoreChange:
    """One change to the store; ``obj`` is the new state (for DELETED, the last one)."""

    type: ChangeType
    key: StoreKey
    obj: Obj


def key_for(obj: Obj) -> StoreKey:
    """The key of a raw object; ValueError when it has no kind or name."""
    kind = obj.get("kind")
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(kind, str) or not kind or not isinstance(name, str) or not name:
        raise ValueError("an object needs a kind and a metadata.name")
    if not is_namespaced(kind):
        return StoreKey(kind, "", name)
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    return StoreKey(
        kind, namespace if isinstance(namespace, str) and namespace else "default", name
    )


def _comparable(obj: Obj) -> Obj:
    out = dict(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict) and "resourceVersion" in meta:
        out["metadata"] = {k: v for k, v in meta.items() if k != "resourceVersion"}
    if out.get("kind") in KINDS:
        out.pop("status", None)
    return out


def same_object(a: Obj, b: Obj) -> bool:
    """Whether ``b`` says nothing new about ``a`` (see the module docstring)."""
    if a is b:
        return True
    rv_a = (a.get("metadata") or {}).get("resourceVersion")
    rv_b = (b.get("metadata") or {}).get("resourceVersion")
    if rv_a and rv_a == rv_b:
        return True  # one API server's object at one resourceVersion
    return _comparable(a) == _comparable(b)


@dataclass(slots=True)
class _Entry:
    obj: Obj
    source: str
    origin: str  # file name or API server, for problems
    checked: bool = False
    valid: Object | None = None
    location: Origin | None = None
    problems: tuple[Problem, ...] = ()
    key: ObjectKey | None = None  # key_of(valid), kept: every new version lists them all


class ObjectStore:
    """See the module docstring."""

    def __init__(self) -> None:
        self.synced = asyncio.Event()
        self.version = 0
        self.counts: Counter[ChangeType] = Counter()  # change events since creation
        self._kinds: dict[str, dict[StoreKey, _Entry]] = {}
        self._expected: set[str] = set()
        self._done: set[str] = set()
        self._changed: asyncio.Event | None = None
        self._listeners: list[Callable[[StoreChange], None]] = []
        self._source_problems: dict[str, tuple[Problem, ...]] = {}
        self._cache: tuple[int, Resources, tuple[Problem, ...]] | None = None
        self._logged: set[str] = set()

    def __repr__(self) -> str:
        count = sum(len(v) for v in self._kinds.values())
        state = "synced" if self.synced.is_set() else "syncing"
        return f"<ObjectStore [{count} objects | version {self.version} | {state}]>"

    # -- reading ----------------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        entry = self._kinds.get(kind, {}).get(StoreKey(kind, namespace, name))
        return None if entry is None else entry.obj

    def items(self, kind: str) -> list[Obj]:
        """Every object of ``kind``, sorted by namespace and name."""
        bucket = self._kinds.get(kind, {})
        return [bucket[k].obj for k in sorted(bucket)]

    def keys(self, kind: str | None = None) -> list[StoreKey]:
        kinds = [kind] if kind is not None else list(self._kinds)
        return sorted(k for name in kinds for k in self._kinds.get(name, {}))

    def __len__(self) -> int:
        return sum(len(v) for v in self._kinds.values())

    async def wait_changed(self, since: int) -> int:
        """Wait until ``version`` is past ``since``; returns the new version."""
        while self.version <= since:
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()
        return self.version

    def subscribe(self, listener: Callable[[StoreChange], None]) -> Callable[[], None]:
        """Call ``listener`` with every change; returns the function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # -- writing (sources) -------------------------------------------------------------------

    def put(self, obj: Obj, *, source: str, origin: str) -> bool:
        """Add or replace one object; returns whether anything meaningful changed."""
        changes: list[StoreChange] = []
        self._put(obj, source, origin, changes)
        self._emit(changes)
        return bool(changes)

    def remove(self, kind: str, namespace: str, name: str, *, source: str) -> bool:
        """Delete one object that ``source`` wrote; returns whether it was there."""
        changes: list[StoreChange] = []
        self._remove(StoreKey(kind, namespace, name), source, changes)
        self._emit(changes)
        return bool(changes)

    def replace(
        self, kinds: Iterable[str], objects: Iterable[tuple[Obj, str]], *, source: str
    ) -> list[StoreChange]:
        """A full list by ``source`` of ``kinds`` (``(object, origin)`` pairs): delete what
        ``source`` had of those kinds that the list lacks, put the rest. One new version."""
        wanted = set(kinds)
        listed: dict[StoreKey, tuple[Obj, str]] = {}
        for obj, origin in objects:
            listed[key_for(obj)] = (obj, origin)
        changes: list[StoreChange] = []
        for kind in wanted:
            for key, entry in list(self._kinds.get(kind, {}).items()):
                if key not in listed and entry.source == source:
                    self._remove(key, source, changes)
        for obj, origin in listed.values():
            self._put(obj, source, origin, changes)
        self._emit(changes)
        return changes

    def expect(self, name: str) -> None:
        """Register an initial list (e.g. ``kube/Service``) that ``synced`` waits for."""
        self._expected.add(name)

    def mark_synced(self, name: str) -> None:
        self._done.add(name)
        if self._expected and self._expected <= self._done and not self.synced.is_set():
            self.synced.set()
            log.info("object store synced: %d objects", len(self))

    def pending(self) -> list[str]:
        """The initial lists ``synced`` still waits for."""
        return sorted(self._expected - self._done)

    def set_source_problems(self, source: str, problems: Iterable[Problem]) -> None:
        """Problems a source found reading its input (such as bad YAML), shown by problems()."""
        found = tuple(problems)
        if found != self._source_problems.get(source, ()):
            self._source_problems[source] = found
            self._cache = None

    # -- validated view ----------------------------------------------------------------------

    def resources(self) -> Resources:
        """The valid configuration objects (cached until the next change)."""
        return self._validated()[0]

    def problems(self) -> tuple[Problem, ...]:
        """Why objects were skipped: source problems, then validation problems."""
        return self._validated()[1]

    def _validated(self) -> tuple[Resources, tuple[Problem, ...]]:
        if self._cache is not None and self._cache[0] == self.version:
            return self._cache[1], self._cache[2]
        objects: dict[ObjectKey, Object] = {}
        origins: dict[ObjectKey, Origin] = {}
        found: list[Problem] = [p for ps in self._source_problems.values() for p in ps]
        for kind in KINDS:
            for entry in self._kinds.get(kind, {}).values():
                if not entry.checked:
                    _validate(entry)
                found.extend(entry.problems)
                okey = entry.key
                if entry.valid is not None and entry.location is not None and okey is not None:
                    objects[okey] = entry.valid
                    origins[okey] = entry.location
        settings = sorted(k for k in objects if k.kind == ProxySettings.kind_name)
        for key in settings[1:]:
            origin = origins.pop(key)
            del objects[key]
            found.append(
                Problem(
                    origin.file,
                    f"only one ProxySettings is allowed; {settings[0]} is already loaded",
                    str(key),
                )
            )
        keys = sorted(objects)
        resources = Resources(tuple(objects[k] for k in keys), {k: origins[k] for k in keys})
        problems = tuple(found)
        self._cache = (self.version, resources, problems)
        self._log_problems(problems)
        return resources, problems

    def _log_problems(self, problems: tuple[Problem, ...]) -> None:
        texts = {str(p) for p in problems}
        for text in sorted(texts - self._logged):
            log.warning("skipping an invalid object: %s", text)
        self._logged = texts

    # -- internals ---------------------------------------------------------------------------

    def _put(self, obj: Obj, source: str, origin: str, changes: list[StoreChange]) -> None:
        key = key_for(obj)
        bucket = self._kinds.setdefault(key.kind, {})
        old = bucket.get(key)
        if old is not None and same_object(old.obj, obj):
            old.obj = obj  # the newest resourceVersion; the validation still holds
            old.source, old.origin = source, origin
            return
        bucket[key] = _Entry(obj, source, origin)
        changes.append(StoreChange("ADDED" if old is None else "MODIFIED", key, obj))

    def _remove(self, key: StoreKey, source: str, changes: list[StoreChange]) -> None:
        bucket = self._kinds.get(key.kind, {})
        entry = bucket.get(key)
        if entry is None or entry.source != source:
            return
        del bucket[key]
        changes.append(StoreChange("DELETED", key, entry.obj))

    def _emit(self, changes: list[StoreChange]) -> None:
        if not changes:
            return
        self.version += 1
        for change in changes:
            self.counts[change.type] += 1
            for listener in list(self._listeners):
                listener(change)
        if self._changed is not None:
            self._changed.set()
            self._changed = None


def _validate(entry: _Entry) -> None:
    try:
        entry.valid, entry.location, entry.problems = validate_one(entry.obj, entry.origin)
        entry.key = key_of(entry.valid) if entry.valid is not None else None
    except Exception as exc:  # a loader bug must not stop the controller
        log.exception("validating %s failed", entry.origin)
        entry.valid, entry.location = None, None
        entry.problems = (Problem(entry.origin, f"cannot validate: {exc}"),)
    entry.checked = True
