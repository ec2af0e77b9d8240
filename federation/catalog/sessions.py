"""Sessions: create, destroy, renew, read, and invalidation (TTL, checks, node).

Called by ``routes_session``, by ``catalog`` (a critical or deleted check, a deleted node)
and by the server's expiry loop (``expire``). It follows Consul's ``Session.Apply`` and
state store:

- create validates before Raft with Consul's 500 messages (``Invalid Behavior setting``,
  ``Session TTL '...' invalid``, ``Invalid Session TTL '<ns>', must be between [10s=24h0m0s]``)
  and at apply time needs the node and the session's checks (default: the node's
  ``serfHealth``) to exist and not be critical;
- a TTL session is invalidated when its TTL passes without a renew. Consul promises only a
  lower bound (it may wait up to twice the TTL); this store invalidates at the TTL. After a
  restart every TTL restarts from the load time, as Consul's new leader does;
- invalidation releases the session's locks (``release``) or deletes the keys (``delete``),
  and puts each of those keys under the session's lock delay (at most 60 s), during which no
  session can acquire it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from federation.catalog import kv
from federation.catalog.decode import ListOf, Schema
from federation.catalog.durations import HOUR, SECOND, DurationError, format_duration
from federation.catalog.durations import parse_duration as parse_go_duration
from federation.catalog.errors import RPCError
from federation.catalog.model import KVEntry, ServiceCheck, Session
from federation.catalog.state import SERF_CHECK_ID, TOPIC_SESSIONS, Result, Store

SESSION_TTL_MAX_NS = 24 * HOUR
MAX_LOCK_DELAY_NS = 60 * SECOND
DEFAULT_LOCK_DELAY_NS = 15 * SECOND
# A numeric LockDelay below this many nanoseconds is taken as seconds, as Consul does.
_LOCK_DELAY_MIN_THRESHOLD = 1000

SESSION_SCHEMA = Schema(
    "structs.Session",
    {
        "ID": "string",
        "Name": "string",
        "Node": "string",
        "LockDelay": "any",
        "Behavior": "string",
        "TTL": "string",
        "Checks": ListOf("string"),
        "NodeChecks": ListOf("string"),
        "ServiceChecks": ListOf(
            Schema("structs.ServiceCheck", {"ID": "string", "Namespace": "string"})
        ),
    },
)


def lock_delay_ns(raw: object) -> int:
    """Session ``LockDelay``: a Go duration string or a number of nanoseconds; values under
    1000 ns mean seconds. Raises ``DurationError``/``ValueError`` with the decode message."""
    if isinstance(raw, str):
        ns = parse_go_duration(raw)
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        ns = int(raw)
    else:
        raise ValueError(
            "json: cannot unmarshal into Go struct field Session.LockDelay of type time.Duration"
        )
    if ns < _LOCK_DELAY_MIN_THRESHOLD:
        ns *= SECOND
    return ns


def create(
    store: Store, req: dict[str, Any], *, new_id: Callable[[], str] = lambda: str(uuid.uuid4())
) -> str:
    """``PUT /v1/session/create`` with a decoded body (LockDelay already in ns, or absent)."""
    node = req.get("Node", store.node_name)
    if not node:
        raise RPCError("Must provide Node")
    behavior = req.get("Behavior", "") or "release"
    if behavior not in ("release", "delete"):
        raise RPCError(f"Invalid Behavior setting '{behavior}'")
    ttl: str = req.get("TTL", "")
    ttl_ns = 0
    if ttl:
        try:
            ttl_ns = parse_go_duration(ttl)
        except DurationError as exc:
            raise RPCError(f"Session TTL '{ttl}' invalid: {exc}") from None
        ttl_min_ns = int(store.session_ttl_min_s * SECOND)
        if ttl_ns != 0 and not ttl_min_ns <= ttl_ns <= SESSION_TTL_MAX_NS:
            raise RPCError(
                f"Invalid Session TTL '{ttl_ns}', must be between "
                f"[{format_duration(ttl_min_ns)}={format_duration(SESSION_TTL_MAX_NS)}]"
            )
    node_checks: list[str] | None
    service_checks: list[ServiceCheck] | None = None
    if "Checks" not in req and "NodeChecks" not in req and "ServiceChecks" not in req:
        node_checks = [SERF_CHECK_ID]
    else:
        node_checks = req.get("NodeChecks")
        if node_checks is None:
            node_checks = list(req.get("Checks") or [])
        if req.get("ServiceChecks"):
            service_checks = [
                ServiceCheck(id=c.get("ID", ""), namespace=c.get("Namespace", ""))
                for c in req["ServiceChecks"]
            ]

    idx = store.next_index()
    try:
        node_key = node.lower()
        if node_key not in store.nodes:
            raise RPCError("Missing node registration")
        on_node = store.node_checks.get(node_key, {})
        wanted = list(node_checks) + [c.id for c in service_checks or ()]
        for check_id in wanted:
            check = on_node.get(check_id)
            if check is None:
                raise RPCError(f"Missing check '{check_id}' registration")
            if check.status == "critical":
                raise RPCError(f"Check '{check_id}' is in critical state")
        session_id = new_id()
        while session_id in store.sessions:
            session_id = new_id()
        store.sessions[session_id] = Session(
            id=session_id,
            name=req.get("Name", ""),
            node=store.nodes[node_key].node,
            lock_delay_ns=req.get("LockDelay", DEFAULT_LOCK_DELAY_NS),
            behavior=behavior,
            ttl=ttl,
            node_checks=node_checks,
            service_checks=service_checks,
            create_index=idx,
            modify_index=idx,
        )
        store.touch(idx, "sessions")
        if ttl_ns > 0:
            store.session_deadlines[session_id] = store.clock.now() + ttl_ns / SECOND
        return session_id
    finally:
        store.commit()


def ttl_seconds(session: Session) -> float:
    if not session.ttl:
        return 0.0
    try:
        return parse_go_duration(session.ttl) / SECOND
    except DurationError:
        return 0.0


def destroy(store: Store, session_id: str) -> None:
    idx = store.next_index()
    invalidate(store, idx, session_id)
    store.commit()


def renew(store: Store, session_id: str) -> Session | None:
    """Restart a TTL session's timer; None when the session does not exist."""
    session = store.sessions.get(session_id)
    if session is None:
        return None
    ttl = ttl_seconds(session)
    if ttl > 0:
        store.session_deadlines[session_id] = store.clock.now() + ttl
    return session


def restart_timers(store: Store) -> None:
    """After a load: every TTL session gets a full TTL from now."""
    now = store.clock.now()
    store.session_deadlines = {
        sid: now + ttl for sid, s in store.sessions.items() if (ttl := ttl_seconds(s)) > 0
    }


def invalidate(store: Store, idx: int, session_id: str) -> None:
    """Delete the session; release or delete its keys and put them under its lock delay."""
    session = store.sessions.pop(session_id, None)
    store.session_deadlines.pop(session_id, None)
    if session is None:
        return
    store.touch(idx, "sessions")
    delay_s = min(session.lock_delay_ns, MAX_LOCK_DELAY_NS) / SECOND
    now = store.clock.now()
    held = sorted(k for k, e in store.kvs.items() if e.session == session_id)
    for key in held:
        entry = store.kvs[key]
        if session.behavior == "delete":
            kv.delete_entry(store, idx, key)
        else:
            released = KVEntry(
                key=key, value=entry.value, flags=entry.flags, lock_index=entry.lock_index
            )
            kv.set_entry(store, idx, released, update_session=True)
        if delay_s > 0:
            store.lock_delays[key] = now + delay_s


def invalidate_for_check(store: Store, idx: int, node_key: str, check_id: str) -> None:
    for sid, session in list(store.sessions.items()):
        if session.node.lower() != node_key:
            continue
        ids = list(session.node_checks or ()) + [c.id for c in session.service_checks or ()]
        if check_id in ids:
            invalidate(store, idx, sid)


def invalidate_for_node(store: Store, idx: int, node_key: str) -> None:
    for sid, session in list(store.sessions.items()):
        if session.node.lower() == node_key:
            invalidate(store, idx, sid)


def next_deadline(store: Store) -> float | None:
    return min(store.session_deadlines.values(), default=None)


def expire(store: Store) -> list[str]:
    """Invalidate every session whose TTL has passed (one Raft apply each, as Consul's
    leader does); returns their IDs."""
    now = store.clock.now()
    due = sorted(sid for sid, t in store.session_deadlines.items() if t <= now)
    for sid in due:
        destroy(store, sid)
    return due


# -- reads ----------------------------------------------------------------------------------


def info(store: Store, session_id: str) -> Result[list[Session]]:
    session = store.sessions.get(session_id)
    return Result.of(
        store.tables["sessions"], (TOPIC_SESSIONS,), [session] if session is not None else []
    )


def list_all(store: Store) -> Result[list[Session]]:
    return Result.of(
        store.tables["sessions"], (TOPIC_SESSIONS,), sorted(store.sessions.values(), key=_by_id)
    )


def node_sessions(store: Store, node: str) -> Result[list[Session]]:
    key = node.lower()
    found = [s for s in store.sessions.values() if s.node.lower() == key]
    return Result.of(store.tables["sessions"], (TOPIC_SESSIONS,), sorted(found, key=_by_id))


def _by_id(session: Session) -> str:
    return session.id
