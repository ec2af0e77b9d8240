"""KV operations, as Consul's ``KVS`` endpoint and state store do them.

Called by ``routes_kv`` (and by ``sessions`` when an invalidated session releases or deletes
its keys). Every write that reaches "Raft" takes a new index, even one that changes nothing
(a failed CAS); a lock refused by the lock delay is refused before Raft and takes none.

Indexes, as Consul answers them:

- one key: its ModifyIndex; a missing key: the KV table index (keys and tombstones);
- a prefix (``recurse`` or ``keys``): the highest ModifyIndex under it or tombstone under it
  (so deleting a key wakes a watcher of its prefix); the whole table for the empty prefix.

Deleted keys leave a tombstone with the deleting index. Consul reaps tombstones after a
while; this store keeps them (they are a key and an integer each).
"""

from __future__ import annotations

from federation.catalog.errors import RPCError
from federation.catalog.model import KVEntry, same
from federation.catalog.state import TOPIC_KVS, Result, Store

MAX_VALUE_BYTES = 512 * 1024  # Consul's kv_max_value_size default


def _table_index(store: Store) -> int:
    return store.max_table_index("kvs", "tombstones")


def _prefix_index(store: Store, prefix: str, entries: list[KVEntry]) -> int:
    if not prefix:
        return _table_index(store)
    index = max((e.modify_index for e in entries), default=0)
    for key, stone in store.tombstones.items():
        if stone > index and key.startswith(prefix):
            index = stone
    return index or _table_index(store)


def get(store: Store, key: str) -> Result[KVEntry | None]:
    entry = store.kvs.get(key)
    index = entry.modify_index if entry is not None else _table_index(store)
    return Result.of(index, (TOPIC_KVS,), entry)


def list_prefix(store: Store, prefix: str) -> Result[list[KVEntry]]:
    entries = [store.kvs[k] for k in sorted(store.kvs) if k.startswith(prefix)]
    return Result.of(_prefix_index(store, prefix, entries), (TOPIC_KVS,), entries)


def list_keys(store: Store, prefix: str, separator: str = "") -> Result[list[str]]:
    """Key names under ``prefix``; with a separator, everything after the first separator
    past the prefix folds into one ``prefix...sep`` entry."""
    entries = [store.kvs[k] for k in sorted(store.kvs) if k.startswith(prefix)]
    keys: list[str] = []
    seen: set[str] = set()
    for entry in entries:
        if not separator:
            keys.append(entry.key)
            continue
        after = entry.key[len(prefix) :]
        cut = after.find(separator)
        if cut < 0:
            keys.append(entry.key)
            continue
        folded = entry.key[: len(prefix) + cut + len(separator)]
        if folded not in seen:
            seen.add(folded)
            keys.append(folded)
    return Result.of(_prefix_index(store, prefix, entries), (TOPIC_KVS,), keys)


# -- the state-store primitives ------------------------------------------------------------


def set_entry(store: Store, idx: int, entry: KVEntry, *, update_session: bool) -> None:
    """Consul's ``kvsSetTxn``: keep CreateIndex, keep the holder unless told otherwise, and
    leave everything (ModifyIndex included) alone when nothing changed."""
    existing = store.kvs.get(entry.key)
    entry.create_index = existing.create_index if existing is not None else idx
    if not update_session:
        entry.session = existing.session if existing is not None else ""
    if existing is not None and same(existing, entry):
        return
    entry.modify_index = idx
    store.kvs[entry.key] = entry
    store.touch(idx, "kvs")


def delete_entry(store: Store, idx: int, key: str) -> None:
    if store.kvs.pop(key, None) is None:
        return
    store.tombstones[key] = idx
    store.touch(idx, "kvs", "tombstones")


def _value(value: bytes) -> bytes | None:
    # Go reads an empty body into a nil slice: the entry's Value is null.
    return value or None


# -- writes ---------------------------------------------------------------------------------


def put(store: Store, key: str, value: bytes, flags: int = 0) -> bool:
    """A plain PUT: always succeeds; a locked key stays locked (its LockIndex is reset, as
    Consul's request entry carries none)."""
    idx = store.next_index()
    set_entry(store, idx, KVEntry(key=key, value=_value(value), flags=flags), update_session=False)
    store.commit()
    return True


def cas(store: Store, key: str, value: bytes, flags: int, cas_index: int) -> bool:
    """``?cas=N``: 0 writes only an absent key; N writes only if ModifyIndex is N."""
    idx = store.next_index()
    existing = store.kvs.get(key)
    ok = (existing is None and cas_index == 0) or (
        existing is not None and cas_index != 0 and existing.modify_index == cas_index
    )
    if ok:
        entry = KVEntry(key=key, value=_value(value), flags=flags)
        set_entry(store, idx, entry, update_session=False)
    store.commit()
    return ok


def acquire(store: Store, key: str, value: bytes, flags: int, session: str) -> bool:
    """``?acquire=<session>``: take a free lock (LockIndex+1), update a lock already held by
    this session, refuse one held by another session or still under a lock delay."""
    delay_until = store.lock_delays.get(key)
    if delay_until is not None:
        if delay_until > store.clock.now():
            return False
        del store.lock_delays[key]
    idx = store.next_index()
    try:
        if not session:
            raise RPCError("missing session")
        if session not in store.sessions:
            raise RPCError(f'invalid session "{session}"')
        existing = store.kvs.get(key)
        entry = KVEntry(key=key, value=_value(value), flags=flags, session=session)
        if existing is None:
            entry.lock_index = 1
        elif existing.session == session:
            entry.lock_index = existing.lock_index
        elif existing.session:
            return False
        else:
            entry.lock_index = existing.lock_index + 1
        set_entry(store, idx, entry, update_session=True)
        return True
    finally:
        store.commit()


def release(store: Store, key: str, value: bytes, flags: int, session: str) -> bool:
    """``?release=<session>``: only the holder releases; the value is written too."""
    idx = store.next_index()
    try:
        if not session:
            raise RPCError("missing session")
        existing = store.kvs.get(key)
        if existing is None or existing.session != session:
            return False
        entry = KVEntry(key=key, value=_value(value), flags=flags, lock_index=existing.lock_index)
        set_entry(store, idx, entry, update_session=True)
        return True
    finally:
        store.commit()


def delete(store: Store, key: str) -> bool:
    idx = store.next_index()
    delete_entry(store, idx, key)
    store.commit()
    return True


def delete_tree(store: Store, prefix: str) -> bool:
    idx = store.next_index()
    for key in [k for k in store.kvs if k.startswith(prefix)]:
        delete_entry(store, idx, key)
    store.commit()
    return True


def delete_cas(store: Store, key: str, cas_index: int) -> bool:
    """``DELETE ?cas=N``: deletes only if ModifyIndex is N; a missing key answers true."""
    idx = store.next_index()
    existing = store.kvs.get(key)
    if existing is None:
        store.commit()
        return True
    if existing.modify_index != cas_index:
        store.commit()
        return False
    delete_entry(store, idx, key)
    store.commit()
    return True
