"""The Kubernetes API double's object store: etcd-like revisions, history and watches (sans-IO).

Called by :mod:`tests.support.kube_http` (client requests) and :mod:`tests.support.kube_api`
(direct writes from tests, "as if another client did it"). Thread-safe: one lock guards the
objects, the history and the open watches, so a watch registers atomically with the events it
replays and never misses or repeats one.

Semantics (``../shared/reference/kubernetes-api.md``):

- One global, monotonic resourceVersion (a string of an integer) for every write, like etcd's
  revision; a list's ``metadata.resourceVersion`` is the current revision.
- Each write records a change (ADDED, MODIFIED, DELETED) in the history. :meth:`KubeStore.compact`
  drops the history up to the current revision: a watch or an ``Exact`` list from an older
  resourceVersion then fails with 410 ``Expired`` ("too old resource version: R (C)").
- Watch from resourceVersion unset or ``"0"``: synthetic ADDED for every existing object, then
  changes; from R: only the changes after R. Selectors apply to watches: an object that starts
  matching arrives as ADDED, one that stops matching as DELETED (carrying its new state).
- DELETED events carry the object's last state with the deletion's resourceVersion.
- Metadata: ``uid``, ``creationTimestamp`` and ``generation`` (1, then +1 whenever anything
  outside ``metadata`` and ``status`` changes) are set by the store on every kind. An update
  that changes nothing is a no-op: no new resourceVersion, no event.
- Client writes to a resource with a status subresource keep the stored ``status``; writes
  through ``/status`` change only ``status``. Direct writes from tests keep what they are given.
- Deleting a Namespace deletes the objects in it first (immediately: no finalizers, no
  Terminating phase).
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import itertools
import json
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.kube_objects import apply_defaults, check_shape, validate
from tests.support.kube_patch import PatchError, apply_patch
from tests.support.kube_resources import ResourceRegistry, ResourceType
from tests.support.kube_selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from tests.support.kube_status import (
    Cause,
    KubeStatusError,
    already_exists,
    bad_request,
    conflict,
    expired,
    invalid,
    not_found,
    too_large,
    too_old,
)

Key = tuple[str, str]  # (namespace or "", name)
Event = dict[str, Any]  # {"type": ..., "object": {...}} as sent on the wire
Deliver = Callable[[Event | None], None]  # None ends the stream

NAMESPACES = ResourceType(
    "",
    "v1",
    "namespaces",
    "Namespace",
    namespaced=False,
    builtin=True,
    return_deleted_object=False,
)
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


@dataclass(frozen=True)
class Change:
    """One recorded write: ``obj`` as sent in the event, ``prev`` the state before it."""

    rv: int
    type: str
    rt: ResourceType
    key: Key
    obj: dict[str, Any]
    prev: dict[str, Any] | None


@dataclass(eq=False)
class Watch:
    """One open watch: which objects it sees and where its events go."""

    rt: ResourceType
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    bookmarks: bool
    deliver: Deliver
    ident: int = field(default_factory=itertools.count(1).__next__)

    def visible(self, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace", "") != self.namespace:
            return False
        return self.labels.matches(meta.get("labels") or {}) and self.fields.matches(obj)

    def translate(self, change: Change) -> Event | None:
        if change.rt.gvr != self.rt.gvr:
            return None
        if change.type == "DELETED":
            return {"type": "DELETED", "object": change.obj} if self.visible(change.obj) else None
        now = self.visible(change.obj)
        before = change.prev is not None and self.visible(change.prev)
        if now and before:
            return {"type": "MODIFIED", "object": change.obj}
        if now:
            return {"type": "ADDED", "object": change.obj}
        if before:
            return {"type": "DELETED", "object": change.obj}
        return None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _without_rv(obj: dict[str, Any]) -> dict[str, Any]:
    out = dict(obj)
    out["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
    return out


def _encode_continue(rv: int, start: Key) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": f"{start[0]}/{start[1]}\x00"})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, Key]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        rv = int(data["rv"])
        start = str(data["start"]).rstrip("\x00")
        namespace, name = start.split("/", 1)
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise bad_request(f"continue key is not valid: {exc}") from None
    if data.get("v") != "meta.k8s.io/v1":
        raise bad_request("continue key is not valid: incorrect encoded start resourceVersion")
    return rv, (namespace, name)


def _parse_rv(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise invalid(
            "ListOptions",
            "meta.k8s.io",
            "",
            [
                Cause(
                    "FieldValueInvalid",
                    f'Invalid value: "{text}": invalid resource version',
                    "resourceVersion",
                )
            ],
        )
    return value


class KubeStore:
    """Objects by resource type and key, the change history and the open watches."""

    def __init__(self, registry: ResourceRegistry | None = None) -> None:
        self.registry = registry if registry is not None else ResourceRegistry()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._rv = 0
        self._compacted = 0
        self._objects: dict[tuple[str, str, str], dict[Key, dict[str, Any]]] = {}
        self._history: list[Change] = []
        self._watches: list[Watch] = []
        self._next_ip = itertools.count(10)
        for name in SYSTEM_NAMESPACES:
            self.create(self.namespaces, "", {"metadata": {"name": name}}, as_client=False)

    @property
    def namespaces(self) -> ResourceType:
        return self.registry.get("", "v1", "namespaces") or NAMESPACES

    # -- reading --------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    @property
    def compacted_at(self) -> int:
        with self._lock:
            return self._compacted

    def _bucket(self, rt: ResourceType) -> dict[Key, dict[str, Any]]:
        return self._objects.setdefault(rt.gvr, {})

    def _key(self, rt: ResourceType, namespace: str, name: str) -> Key:
        return (namespace if rt.namespaced else "", name)

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            obj = self._bucket(rt).get(self._key(rt, namespace, name))
            if obj is None:
                raise not_found(rt.qualified, name, rt.group, rt.plural)
            return copy.deepcopy(obj)

    def selectors(
        self, rt: ResourceType, label_selector: str | None, field_selector: str | None
    ) -> tuple[LabelSelector, FieldSelector]:
        supported = {"metadata.name", "metadata.namespace", *rt.field_labels}
        try:
            labels = parse_label_selector(label_selector or "")
            fields = parse_field_selector(field_selector or "", supported.__contains__)
        except SelectorError as exc:
            raise bad_request(str(exc)) from None
        return labels, fields

    def _state_at(self, rt: ResourceType, rv: int) -> dict[Key, dict[str, Any]]:
        state = dict(self._bucket(rt))
        for change in reversed(self._history):
            if change.rv <= rv:
                break
            if change.rt.gvr != rt.gvr:
                continue
            if change.type == "ADDED":
                state.pop(change.key, None)
            elif change.prev is not None:
                state[change.key] = change.prev
        return state

    def list_collection(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> dict[str, Any]:
        """The ``<Kind>List`` body for a list request (raises KubeStatusError)."""
        labels, fields = self.selectors(rt, label_selector, field_selector)
        _check_list_options(resource_version, resource_version_match, continue_token)
        with self._lock:
            start: Key | None = None
            if continue_token:
                snapshot, start = _decode_continue(continue_token)
                if snapshot < self._compacted:
                    raise expired(
                        "The provided continue parameter is too old to display a consistent list "
                        "result. You can start a new list without the continue parameter."
                    )
            elif resource_version_match == "Exact":
                snapshot = _parse_rv(resource_version or "")
                if snapshot > self._rv:
                    raise too_large(snapshot, self._rv)
                if snapshot < self._compacted:
                    raise too_old(snapshot, self._compacted)
            else:
                if resource_version not in (None, "", "0"):
                    wanted = _parse_rv(resource_version)
                    if wanted > self._rv:
                        raise too_large(wanted, self._rv)
                snapshot = self._rv
            state = self._state_at(rt, snapshot) if snapshot != self._rv else self._bucket(rt)
            keys = sorted(k for k in state if start is None or k > start)
            matching = [
                state[k]
                for k in keys
                if (namespace is None or k[0] == namespace)
                and labels.matches(state[k]["metadata"].get("labels") or {})
                and fields.matches(state[k])
            ]
            meta: dict[str, Any] = {"resourceVersion": str(snapshot)}
            if limit is not None and limit > 0 and len(matching) > limit:
                page = matching[:limit]
                last = page[-1]["metadata"]
                meta["continue"] = _encode_continue(
                    snapshot, (last.get("namespace", ""), last["name"])
                )
                meta["remainingItemCount"] = len(matching) - limit
            else:
                page = matching
            items = [self._list_item(rt, obj) for obj in page]
        return {
            "kind": rt.list_kind,
            "apiVersion": rt.api_version,
            "metadata": meta,
            "items": items,
        }

    @staticmethod
    def _list_item(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        # A shallow copy: the stored objects are never changed in place (every write stores
        # a new one), and the list is serialized before anything else runs.
        if rt.builtin:
            return {k: v for k, v in obj.items() if k != "kind" and k != "apiVersion"}
        return dict(obj)

    # -- writing --------------------------------------------------------------------------

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _record(self, change: Change) -> None:
        self._history.append(change)
        for watch in list(self._watches):
            event = watch.translate(change)
            if event is not None:
                watch.deliver(event)
        self._changed.notify_all()

    def _allocate_ip(self) -> str:
        n = next(self._next_ip)
        return f"10.96.{n // 250}.{n % 250 + 1}"

    def _prepare(
        self, rt: ResourceType, namespace: str, body: Any, url_name: str | None
    ) -> dict[str, Any]:
        obj = check_shape(rt, body)
        meta = obj["metadata"]
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if url_name is not None:
            if meta.get("name") and meta["name"] != url_name:
                raise bad_request(
                    f"the name of the object ({meta['name']}) does not match the name on the URL "
                    f"({url_name})"
                )
            meta["name"] = url_name
        for key in ("selfLink", "managedFields", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(key, None)
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        return obj

    def _check_valid(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        causes = validate(rt, obj)
        if causes:
            raise invalid(rt.kind, rt.group, obj["metadata"].get("name", ""), causes)

    def create(
        self, rt: ResourceType, namespace: str, body: Any, *, as_client: bool = True
    ) -> dict[str, Any]:
        """Create; ``as_client=False`` (tests' direct writes) keeps ``status`` and creates a
        missing namespace instead of answering 404."""
        obj = self._prepare(rt, namespace, body, None)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=5))
            meta["name"] = f"{meta['generateName']}{suffix}"
        self._check_valid(rt, obj)
        with self._lock:
            if rt.namespaced and self._key(self.namespaces, "", namespace) not in self._bucket(
                self.namespaces
            ):
                if as_client:
                    raise not_found("namespaces", namespace, "", "namespaces")
                self.create(self.namespaces, "", {"metadata": {"name": namespace}}, as_client=False)
            key = self._key(rt, namespace, meta["name"])
            if key in self._bucket(rt):
                raise already_exists(rt.qualified, meta["name"], rt.group, rt.plural)
            if as_client and rt.status_subresource:
                obj.pop("status", None)
            apply_defaults(rt, obj, self._allocate_ip)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now()
            meta["generation"] = 1
            rv = self._next_rv()
            meta["resourceVersion"] = str(rv)
            self._bucket(rt)[key] = obj
            self._record(Change(rv, "ADDED", rt, key, obj, None))
            return copy.deepcopy(obj)

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        as_client: bool = True,
    ) -> dict[str, Any]:
        """Replace (PUT); a non-empty ``metadata.resourceVersion`` must be the stored one."""
        obj = self._prepare(rt, namespace, body, name)
        with self._lock:
            key = self._key(rt, namespace, name)
            old = self._bucket(rt).get(key)
            if old is None:
                raise not_found(rt.qualified, name, rt.group, rt.plural)
            wanted_rv = obj["metadata"].get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise conflict(rt.qualified, name, rt.group, rt.plural)
            if subresource == "status":
                new = copy.deepcopy(old)
                if obj.get("status") is None:
                    new.pop("status", None)
                else:
                    new["status"] = obj["status"]
            else:
                new = obj
                if as_client and rt.status_subresource:
                    new.pop("status", None)
                    if old.get("status") is not None:
                        new["status"] = copy.deepcopy(old["status"])
            self._check_valid(rt, new)
            if rt.group == "" and rt.plural == "services":
                spec, old_spec = new.setdefault("spec", {}), old.get("spec") or {}
                for ip_field in ("clusterIP", "clusterIPs"):
                    if not spec.get(ip_field) and old_spec.get(ip_field):
                        spec[ip_field] = copy.deepcopy(old_spec[ip_field])
            apply_defaults(rt, new, self._allocate_ip)
            meta, old_meta = new["metadata"], old["metadata"]
            for keep in ("uid", "creationTimestamp", "namespace", "name"):
                if keep in old_meta:
                    meta[keep] = old_meta[keep]
            meta["generation"] = old_meta.get("generation", 1) + (
                0 if _spec_part(new) == _spec_part(old) else 1
            )
            meta["resourceVersion"] = old_meta["resourceVersion"]
            if _without_rv(new) == _without_rv(old):
                return copy.deepcopy(old)
            rv = self._next_rv()
            meta["resourceVersion"] = str(rv)
            self._bucket(rt)[key] = new
            self._record(Change(rv, "MODIFIED", rt, key, new, old))
            return copy.deepcopy(new)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            old = self.get(rt, namespace, name)
            try:
                patched = apply_patch(content_type, old, patch)
            except PatchError as exc:
                if exc.malformed:
                    raise bad_request(str(exc)) from None
                raise KubeStatusError(422, "Invalid", str(exc)) from None
            return self.update(rt, namespace, name, patched, subresource=subresource)

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        *,
        preconditions: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Delete at once and return the object as the DELETED event carries it."""
        with self._lock:
            key = self._key(rt, namespace, name)
            old = self._bucket(rt).get(key)
            if old is None:
                raise not_found(rt.qualified, name, rt.group, rt.plural)
            for field_name, meta_key in (("uid", "uid"), ("resourceVersion", "resourceVersion")):
                wanted = (preconditions or {}).get(field_name)
                if wanted and wanted != old["metadata"].get(meta_key):
                    raise KubeStatusError(
                        409,
                        "Conflict",
                        f"Precondition failed: {field_name[0].upper()}{field_name[1:]} in "
                        f"precondition: {wanted}, {field_name[0].upper()}{field_name[1:]} in "
                        f"object meta: {old['metadata'].get(meta_key)}",
                    )
            if rt.gvr == self.namespaces.gvr:
                for other in self.registry.all():
                    if not other.namespaced:
                        continue
                    for other_key in sorted(k for k in self._bucket(other) if k[0] == name):
                        self.delete(other, other_key[0], other_key[1])
            del self._bucket(rt)[key]
            rv = self._next_rv()
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(rv)
            self._record(Change(rv, "DELETED", rt, key, gone, old))
            return copy.deepcopy(gone)

    # -- history and watches --------------------------------------------------------------

    def compact(self, at: int | None = None) -> int:
        """Drop the history up to ``at`` (default: now); older resourceVersions become 410."""
        with self._lock:
            point = self._rv if at is None else min(at, self._rv)
            self._compacted = max(self._compacted, point)
            self._history = [c for c in self._history if c.rv > self._compacted]
            return self._compacted

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        deliver: Deliver,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        allow_bookmarks: bool = False,
        send_initial_events: bool | None = None,
    ) -> tuple[Watch, list[Event]]:
        """Register a watch; returns it with the events to send first (raises 410 Expired)."""
        labels, fields = self.selectors(rt, label_selector, field_selector)
        watch = Watch(rt, namespace, labels, fields, allow_bookmarks, deliver)
        with self._lock:
            initial: list[Event] = []
            replay_all = resource_version in (None, "", "0")
            if send_initial_events is None:
                send_initial_events = replay_all
            if send_initial_events:
                bucket = self._bucket(rt)
                for key in sorted(bucket):
                    if watch.visible(bucket[key]):
                        initial.append({"type": "ADDED", "object": copy.deepcopy(bucket[key])})
            elif not replay_all:
                since = _parse_rv(resource_version or "")
                if since < self._compacted:
                    raise too_old(since, self._compacted)
                for change in self._history:
                    if change.rv > since:
                        event = watch.translate(change)
                        if event is not None:
                            initial.append(event)
            self._watches.append(watch)
            self._changed.notify_all()
            return watch, initial

    def bookmark_event(self, rt: ResourceType, *, initial_events_end: bool = False) -> Event:
        with self._lock:
            meta: dict[str, Any] = {"resourceVersion": str(self._rv)}
        if initial_events_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        return {
            "type": "BOOKMARK",
            "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta},
        }

    def bookmark(self, watch: Watch | None = None) -> int:
        """Send a BOOKMARK at the current resourceVersion to ``watch`` (default: every watch
        that allowed bookmarks); returns how many were sent."""
        with self._lock:
            targets = [watch] if watch is not None else list(self._watches)
            sent = 0
            for w in targets:
                if w.bookmarks and w in self._watches:
                    w.deliver(self.bookmark_event(w.rt))
                    sent += 1
            return sent

    def unwatch(self, watch: Watch) -> None:
        with self._lock:
            if watch in self._watches:
                self._watches.remove(watch)
                self._changed.notify_all()

    def end_watches(self, error: KubeStatusError | None = None) -> int:
        """End every open watch, after an in-stream ERROR event if ``error`` is given."""
        with self._lock:
            ended = list(self._watches)
            self._watches.clear()
            for w in ended:
                if error is not None:
                    w.deliver({"type": "ERROR", "object": error.to_status()})
                w.deliver(None)
            self._changed.notify_all()
            return len(ended)

    def watch_count(self, rt: ResourceType | None = None) -> int:
        with self._lock:
            return sum(1 for w in self._watches if rt is None or w.rt.gvr == rt.gvr)

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Block until ``predicate()`` (checked under the lock after each change) holds."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout_s)


def _check_list_options(
    resource_version: str | None, match: str | None, continue_token: str | None
) -> None:
    def forbid(message: str, field_name: str = "resourceVersionMatch") -> KubeStatusError:
        return invalid(
            "ListOptions", "meta.k8s.io", "", [Cause("FieldValueForbidden", message, field_name)]
        )

    if match:
        if match not in ("Exact", "NotOlderThan"):
            raise invalid(
                "ListOptions",
                "meta.k8s.io",
                "",
                [
                    Cause(
                        "FieldValueNotSupported",
                        f'Unsupported value: "{match}": supported values: "Exact", "NotOlderThan"',
                        "resourceVersionMatch",
                    )
                ],
            )
        if not resource_version:
            raise forbid(
                "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
            )
        if match == "Exact" and resource_version == "0":
            raise forbid(
                'Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"'
            )
        if continue_token:
            raise forbid("Forbidden: resourceVersionMatch is forbidden when continue is provided")
    if continue_token and resource_version not in (None, "", "0"):
        raise bad_request("specifying resource version is not allowed when using continue")
