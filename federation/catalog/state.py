"""The sans-IO store: every table, the Raft-like index, and the change topics.

Consul stamps every write with the Raft index of its log entry and keeps, per table, the
index of the last write that changed it; a read answers with the index of the resource it
read (a key's ModifyIndex, a service's own index, a table's index), and a blocking query
waits until that index passes the client's. This store keeps the same bookkeeping:

- ``index``: the last index handed out (``next_index`` is one "Raft apply"); never 0 or
  below, never backwards, persisted across restarts;
- ``tables``: per-table last-change index (nodes, services, checks, kvs, tombstones,
  sessions);
- ``service_indexes``: per service name, the index of the last change to any instance, its
  node or its checks; ``extinction_index``: when the last instance of some service went away;
- ``service_list``, ``node_bodies``: derived views for the big reads (views.py).

A write touches topics (``services``, ``service:<name>``, ``node:<name>``, ``kvs``, ...).
``commit`` hands the set to the subscribers: the blocking-query notifier wakes only the
waiters on those topics, the persister marks the file dirty. Nothing here does I/O or
knows about asyncio; the operations live in ``catalog``, ``kv`` and ``sessions``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from federation.catalog.clock import Clock
from federation.catalog.model import Check, KVEntry, Node, Service, Session
from federation.catalog.views import NodeBodies, ServiceList

TABLES = ("nodes", "services", "checks", "kvs", "tombstones", "sessions")

# Topics a blocking query can wait on.
TOPIC_NODES = "nodes"
TOPIC_SERVICES = "services"
TOPIC_CHECKS = "checks"
TOPIC_KVS = "kvs"
TOPIC_SESSIONS = "sessions"
TOPIC_EXTINCTION = "extinction"


def service_topic(name: str) -> str:
    return "service:" + name.lower()


def node_topic(name: str) -> str:
    """Changes to one node's record or to its services (not its checks)."""
    return "node:" + name.lower()


# Marks "the Raft index moved" for the persister; no query waits on it.
TOPIC_RAFT = "raft"

Listener = Callable[[frozenset[str]], None]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Result(Generic[T]):
    """What a read returns: the index Consul would answer with (never below 1), the topics a
    blocking query on it must wait on, and the value."""

    index: int
    topics: frozenset[str]
    value: T

    @classmethod
    def of(cls, index: int, topics: Iterable[str], value: T) -> Result[T]:
        return cls(max(1, index), frozenset(topics), value)


SERF_CHECK_ID = "serfHealth"


class Store:
    """All state of one catalog. Single-threaded: call it from one thread (the event loop)."""

    def __init__(
        self,
        *,
        clock: Clock,
        datacenter: str = "dc1",
        node_name: str = "isthmus-catalog",
        node_address: str = "127.0.0.1",
        session_ttl_min_s: float = 10.0,
    ) -> None:
        # Configuration.
        self.clock = clock
        self.datacenter = datacenter
        self.node_name = node_name
        self.node_address = node_address
        self.session_ttl_min_s = session_ttl_min_s
        # Indexes.
        self.index = 0
        self.tables: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.service_indexes: dict[str, int] = {}
        self.extinction_index = 0
        # Catalog tables. Node and service names match case-insensitively, as in Consul;
        # keys here are lowercased, the records keep the spelling they were registered with.
        self.nodes: dict[str, Node] = {}
        self.node_services: dict[str, dict[str, Service]] = {}
        self.services_by_name: dict[str, dict[tuple[str, str], Service]] = {}
        self.node_checks: dict[str, dict[str, Check]] = {}
        # (node, service id) -> checks; node-level checks sit under service id "".
        self.service_checks: dict[tuple[str, str], dict[str, Check]] = {}
        # KV tables.
        self.kvs: dict[str, KVEntry] = {}
        self.tombstones: dict[str, int] = {}
        # Sessions; deadlines and lock delays are on ``clock``, not persisted as such.
        self.sessions: dict[str, Session] = {}
        self.session_deadlines: dict[str, float] = {}
        self.lock_delays: dict[str, float] = {}
        # Derived read views, kept current by touch_service/touch_node (views.py).
        self.service_list = ServiceList()
        self.node_bodies = NodeBodies()
        # Change propagation.
        self._topics: set[str] = set()
        self._listeners: list[Listener] = []

    # -- indexes -------------------------------------------------------------------------

    def next_index(self) -> int:
        """One Raft apply: the index every change of this write is stamped with."""
        self.index += 1
        self._topics.add(TOPIC_RAFT)
        return self.index

    def touch(self, idx: int, *tables: str) -> None:
        for table in tables:
            self.tables[table] = idx
            self._topics.add(table)

    def touch_service(self, idx: int, name: str) -> None:
        self.service_indexes[name.lower()] = idx
        self._topics.add(service_topic(name))
        self.service_list.mark(name.lower())

    def touch_node(self, name: str) -> None:
        """The node's record or its set of services changed."""
        self._topics.add(node_topic(name))
        self.node_bodies.mark(name.lower())

    def mark(self, *topics: str) -> None:
        self._topics.update(topics)

    def max_table_index(self, *tables: str) -> int:
        return max(self.tables[t] for t in tables)

    # -- change propagation ---------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def commit(self) -> None:
        """End of a write: tell subscribers which topics changed (if any)."""
        if not self._topics:
            return
        topics = frozenset(self._topics)
        self._topics.clear()
        for listener in list(self._listeners):
            listener(topics)

    # -- the agent's own node ---------------------------------------------------------------

    def ensure_agent_node(self) -> None:
        """Register this catalog's own node with a passing ``serfHealth`` check, as a Consul
        agent does: sessions created without a Node go there and need that check."""
        key = self.node_name.lower()
        if key in self.nodes and SERF_CHECK_ID in self.node_checks.get(key, {}):
            return
        from federation.catalog import catalog  # local: catalog imports this module

        catalog.register(
            self,
            {
                "Node": self.node_name,
                "Address": self.node_address,
                "Checks": [
                    {
                        "CheckID": SERF_CHECK_ID,
                        "Name": "Serf Health Status",
                        "Status": "passing",
                        "Output": "Agent alive and reachable",
                    }
                ],
            },
        )

    def services_on_node(self, node_key: str) -> Iterable[Service]:
        return self.node_services.get(node_key, {}).values()
