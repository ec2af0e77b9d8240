"""Read views kept up to date by the writes, so that big reads cost O(changes), not O(n).

Owned by the ``Store`` (``store.views``) and fed by it: ``Store.touch_service`` marks a
service name dirty, ``Store.touch_node`` a node. Read by ``catalog.list_services`` and
``catalog.node_services`` and by their routes:

- ``ServiceList``: ``/v1/catalog/services`` without ``node-meta``. The union of tags of each
  name is recomputed only for the names a write touched; the sorted name list is kept with
  bisection; the answer (and its encoded JSON) is built once per services-table index and
  then shared by every reader of that index.
- ``NodeBodies``: ``/v1/catalog/node/<node>``: the encoded answer once per node and index,
  each service's JSON object kept until that service changes.

A view answers exactly what the full scan would (tests compare both); everything in it is
derived, never persisted, and built from scratch on first use (e.g. after ``persist.load``).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from federation.catalog.model import Service
    from federation.catalog.state import Store

_ENCODER = msgspec.json.Encoder()


def _tag_union(instances: dict[tuple[str, str], Service]) -> dict[str, list[str]]:
    """Display name -> tags, in instance order, as the full scan builds them."""
    out: dict[str, list[str]] = {}
    for svc in instances.values():
        tags = out.setdefault(svc.service, [])
        for tag in svc.tags or ():
            if tag not in tags:
                tags.append(tag)
    return out


class ServiceList:
    def __init__(self) -> None:
        self._built = False
        self._dirty: set[str] = set()  # lowercased names touched since the last read
        self._by_key: dict[str, dict[str, list[str]]] = {}  # name key -> display -> tags
        self._tags: dict[str, list[str]] = {}  # display name -> tags
        self._names: list[str] = []  # display names, sorted
        self._answer: tuple[int, dict[str, list[str]]] | None = None
        self._body: tuple[int, bytes] | None = None

    def mark(self, name_key: str) -> None:
        self._dirty.add(name_key)

    def _refresh(self, store: Store) -> None:
        if not self._built:
            self._dirty = set(store.services_by_name) | set(self._by_key)
            self._built = True
        if not self._dirty:
            return
        for key in self._dirty:
            for display in self._by_key.pop(key, {}):
                del self._tags[display]
                i = bisect_left(self._names, display)
                del self._names[i]
            instances = store.services_by_name.get(key)
            if not instances:
                continue
            union = _tag_union(instances)
            self._by_key[key] = union
            for display, tags in union.items():
                self._tags[display] = tags
                insort(self._names, display)
        self._dirty.clear()
        self._answer = self._body = None

    def value(self, store: Store, index: int) -> dict[str, list[str]]:
        """The answer at ``index`` (the services table's); callers must not change it."""
        self._refresh(store)
        if self._answer is None or self._answer[0] != index:
            self._answer = (index, {name: self._tags[name] for name in self._names})
        return self._answer[1]

    def body(self, index: int, value: dict[str, list[str]]) -> bytes:
        """``value`` (what ``value`` answered at ``index``) as JSON, encoded once."""
        if self._body is None or self._body[0] != index:
            self._body = (index, _ENCODER.encode(value))
        return self._body[1]


class NodeBodies:
    def __init__(self) -> None:
        self._bodies: dict[str, tuple[int, bytes]] = {}  # node key -> (index, JSON)
        # node key -> service ID -> ((create, modify index), rendered NodeService)
        self._services: dict[str, dict[str, tuple[tuple[int, int], dict[str, Any]]]] = {}

    def mark(self, node_key: str) -> None:
        self._bodies.pop(node_key, None)

    def body(
        self,
        node_key: str,
        index: int,
        build: Callable[[Callable[[Service], dict[str, Any]]], Any],
        render: Callable[[Service], dict[str, Any]],
    ) -> bytes:
        """The encoded answer for ``node_key`` at ``index``: ``build(render_cached)``."""
        cached = self._bodies.get(node_key)
        if cached is not None and cached[0] == index:
            return cached[1]
        before = self._services.get(node_key, {})
        now: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}

        def render_cached(svc: Service) -> dict[str, Any]:
            stamp = (svc.create_index, svc.modify_index)
            hit = before.get(svc.id)
            if hit is None or hit[0] != stamp:
                hit = (stamp, render(svc))
            now[svc.id] = hit
            return hit[1]

        data = _ENCODER.encode(build(render_cached))
        if now:
            self._services[node_key] = now
        else:
            self._services.pop(node_key, None)
        self._bodies[node_key] = (index, data)
        return data
