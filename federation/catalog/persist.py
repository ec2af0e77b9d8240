"""The data file: the whole store as one JSON document, written atomically.

Called by the server: ``load_file`` at start, ``dump``/``write_atomic`` whenever the store
changes and once more at shutdown. The file holds every table and the Raft-like indexes, so
indexes stay monotonic across restarts. Session TTL timers are not saved: they restart from
the load time, as a new Consul leader restarts them. Lock delays are saved as the time they
had left.

A file that cannot be read as a catalog is refused with an error naming it, and is left
untouched (the server does not start over it).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from federation.catalog import sessions
from federation.catalog.model import Check, KVEntry, Node, Service, Session
from federation.catalog.state import TABLES, Store
from pki.files import write_private_file

FORMAT_VERSION = 1


class DataFileError(Exception):
    """The data file exists but is not a catalog this version can load."""


class Snapshot(msgspec.Struct, kw_only=True):
    format: str = "isthmus-catalog"
    version: int = FORMAT_VERSION
    datacenter: str = ""
    index: int = 0
    tables: dict[str, int] = {}
    service_indexes: dict[str, int] = {}
    extinction_index: int = 0
    nodes: list[Node] = []
    services: list[Service] = []
    checks: list[Check] = []
    kvs: list[KVEntry] = []
    tombstones: dict[str, int] = {}
    sessions: list[Session] = []
    lock_delays_remaining_s: dict[str, float] = {}


_ENCODER = msgspec.json.Encoder()


def dump(store: Store) -> bytes:
    now = store.clock.now()
    snap = Snapshot(
        datacenter=store.datacenter,
        index=store.index,
        tables=dict(store.tables),
        service_indexes=dict(store.service_indexes),
        extinction_index=store.extinction_index,
        nodes=list(store.nodes.values()),
        services=[s for on_node in store.node_services.values() for s in on_node.values()],
        checks=[c for on_node in store.node_checks.values() for c in on_node.values()],
        kvs=list(store.kvs.values()),
        tombstones=dict(store.tombstones),
        sessions=list(store.sessions.values()),
        lock_delays_remaining_s={k: t - now for k, t in store.lock_delays.items() if t > now},
    )
    return _ENCODER.encode(snap)


def load(store: Store, data: bytes) -> None:
    """Fill an empty ``store`` from ``data``."""
    try:
        snap = msgspec.json.decode(data, type=Snapshot)
    except msgspec.DecodeError as exc:
        raise DataFileError(f"not a catalog data file: {exc}") from None
    if snap.format != "isthmus-catalog":
        raise DataFileError(f"not a catalog data file (format {snap.format!r})")
    if snap.version != FORMAT_VERSION:
        raise DataFileError(f"unsupported data file version {snap.version}")
    store.index = snap.index
    for table in TABLES:
        store.tables[table] = snap.tables.get(table, 0)
    store.service_indexes = dict(snap.service_indexes)
    store.extinction_index = snap.extinction_index
    for node in snap.nodes:
        store.nodes[node.node.lower()] = node
    for svc in snap.services:
        key = svc.node.lower()
        if key not in store.nodes:
            raise DataFileError(f"service {svc.id!r} is on unknown node {svc.node!r}")
        store.node_services.setdefault(key, {})[svc.id] = svc
        store.services_by_name.setdefault(svc.service.lower(), {})[(key, svc.id)] = svc
    for check in snap.checks:
        key = check.node.lower()
        if key not in store.nodes:
            raise DataFileError(f"check {check.check_id!r} is on unknown node {check.node!r}")
        store.node_checks.setdefault(key, {})[check.check_id] = check
        store.service_checks.setdefault((key, check.service_id), {})[check.check_id] = check
    store.kvs = {e.key: e for e in snap.kvs}
    store.tombstones = dict(snap.tombstones)
    store.sessions = {s.id: s for s in snap.sessions}
    now = store.clock.now()
    store.lock_delays = {k: now + left for k, left in snap.lock_delays_remaining_s.items()}
    sessions.restart_timers(store)
    highest = max([store.index, *store.tables.values(), *store.service_indexes.values()])
    store.index = highest  # never hand out an index already used


def load_file(store: Store, path: str) -> bool:
    """Load ``path`` into ``store``; False when there is no such file yet."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise DataFileError(f"{path}: {exc.strerror}") from None
    try:
        load(store, data)
    except DataFileError as exc:
        raise DataFileError(f"{path}: {exc}") from None
    return True


def write_atomic(path: str, data: bytes) -> None:
    """Write to a temporary file in the same directory (mode 0600: the KV may hold secrets),
    fsync, then rename over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(target, data)
