"""Catalog operations: register, deregister, and the catalog reads (services, service, node).

Called by the HTTP routes (``routes_catalog``) with bodies already decoded by ``decode``, and
by ``health`` for the instance lists. It follows Consul's ``Catalog.Register`` and state
store:

- validation before the Raft apply answers 500 with Consul's messages (``Must provide node``,
  ``Must provide address if SkipNodeUpdate is not set``, ``Must provide service name with
  ID``, ``Bad node ID: ...``, ``Invalid service address``, ...);
- a node, service or check registered again unchanged keeps its ModifyIndex and moves no
  index, so a restarting controller's re-registration wakes no watcher;
- a service's index moves when an instance, its node or one of its checks changes; when the
  last instance of a name goes, ``extinction_index`` records it;
- deleting a node takes its services, checks and sessions with it; a check that turns
  critical or goes away invalidates the sessions bound to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from federation.catalog import sessions
from federation.catalog.decode import ListOf, MapOf, Schema
from federation.catalog.errors import RPCError
from federation.catalog.model import Check, Node, Service, ServiceAddress, Weights, same
from federation.catalog.state import (
    TOPIC_CHECKS,
    TOPIC_EXTINCTION,
    TOPIC_NODES,
    TOPIC_SERVICES,
    Result,
    Store,
    node_topic,
    service_topic,
)

WRITE_REQUEST = Schema("structs.WriteRequest", {"Token": "string"})
SERVICE_SCHEMA = Schema(
    "structs.NodeService",
    {
        "Kind": "string",
        "ID": "string",
        "Service": "string",
        "Tags": ListOf("string"),
        "Address": "string",
        "TaggedAddresses": MapOf(
            Schema("structs.ServiceAddress", {"Address": "string", "Port": "int"})
        ),
        "Meta": MapOf("string"),
        "Port": "int",
        "SocketPath": "string",
        "Weights": Schema("structs.Weights", {"Passing": "int", "Warning": "int"}),
        "EnableTagOverride": "bool",
    },
)
CHECK_SCHEMA = Schema(
    "structs.HealthCheck",
    {
        "Node": "string",
        "CheckID": "string",
        "Name": "string",
        "Status": "string",
        "Notes": "string",
        "Output": "string",
        "ServiceID": "string",
        "ServiceName": "string",
        "ServiceTags": ListOf("string"),
        "Type": "string",
        "Interval": "any",
        "Timeout": "any",
        "Definition": "any",
    },
)
REGISTER_SCHEMA = Schema(
    "structs.RegisterRequest",
    {
        "Datacenter": "string",
        "ID": "string",
        "Node": "string",
        "Address": "string",
        "TaggedAddresses": MapOf("string"),
        "NodeMeta": MapOf("string"),
        "Service": SERVICE_SCHEMA,
        "Check": CHECK_SCHEMA,
        "Checks": ListOf(CHECK_SCHEMA),
        "SkipNodeUpdate": "bool",
        "Token": "string",
        "WriteRequest": WRITE_REQUEST,
    },
)
DEREGISTER_SCHEMA = Schema(
    "structs.DeregisterRequest",
    {
        "Datacenter": "string",
        "Node": "string",
        "ServiceID": "string",
        "CheckID": "string",
        "Token": "string",
        "WriteRequest": WRITE_REQUEST,
    },
)

_UNSPECIFIED_ADDRESSES = frozenset({"0.0.0.0", "::", "[::]"})
_HEX = frozenset("0123456789abcdefABCDEF")


def _uuid_error(text: str) -> str | None:
    """go-uuid's ParseUUID error for ``text``, or None when it is a UUID."""
    if len(text) != 36:
        return "uuid string is wrong length"
    if any(text[i] != "-" for i in (8, 13, 18, 23)):
        return "uuid is improperly formatted"
    for ch in text.replace("-", ""):
        if ch not in _HEX:
            return f"encoding/hex: invalid byte: U+{ord(ch):04X} {ch!r}"
    return None


def check_datacenter(store: Store, dc: str) -> None:
    if dc and dc != store.datacenter:
        raise RPCError("No path to datacenter")


# -- writes ----------------------------------------------------------------------------


def _service_from(node: str, raw: dict[str, Any]) -> Service:
    sid = raw.get("ID", "")
    name = raw.get("Service", "")
    if not sid and name:
        sid = name
    if not name:
        raise RPCError("Must provide service name with ID")
    address = raw.get("Address", "")
    if address in _UNSPECIFIED_ADDRESSES:
        raise RPCError("Invalid service address")
    tagged = raw.get("TaggedAddresses")
    weights = raw.get("Weights")
    return Service(
        node=node,
        kind=raw.get("Kind", ""),
        id=sid,
        service=name,
        tags=[t for t in raw["Tags"] if t is not None] if "Tags" in raw else None,
        address=address,
        tagged_addresses=(
            {
                k: ServiceAddress(address=v.get("Address", ""), port=v.get("Port", 0))
                for k, v in tagged.items()
                if v is not None
            }
            if tagged
            else None
        ),
        meta=raw.get("Meta") or None,
        port=raw.get("Port", 0),
        socket_path=raw.get("SocketPath", ""),
        # The HTTP handler defaults missing weights, as Consul's does.
        weights=(
            Weights(passing=weights.get("Passing", 0), warning=weights.get("Warning", 0))
            if weights is not None
            else Weights()
        ),
        enable_tag_override=raw.get("EnableTagOverride", False),
    )


def _check_from(node: str, raw: dict[str, Any]) -> Check:
    check_id = raw.get("CheckID", "") or raw.get("Name", "")
    return Check(
        node=raw.get("Node", "") or node,
        check_id=check_id,
        name=raw.get("Name", ""),
        status=raw.get("Status", "") or "critical",
        notes=raw.get("Notes", ""),
        output=raw.get("Output", ""),
        service_id=raw.get("ServiceID", ""),
        type=raw.get("Type", ""),
        interval=str(raw.get("Interval", "") or ""),
        timeout=str(raw.get("Timeout", "") or ""),
    )


def register(store: Store, req: dict[str, Any]) -> None:
    """``PUT /v1/catalog/register``: node, optional service, optional checks, atomically."""
    check_datacenter(store, req.get("Datacenter", ""))
    node_name: str = req.get("Node", "")
    if not node_name:
        raise RPCError("Must provide node")
    node_id: str = req.get("ID", "")
    if node_id and (err := _uuid_error(node_id)) is not None:
        raise RPCError(f"Bad node ID: {err}")
    skip_node = bool(req.get("SkipNodeUpdate", False))
    if not req.get("Address") and not skip_node:
        raise RPCError("Must provide address if SkipNodeUpdate is not set")
    service = _service_from(node_name, req["Service"]) if "Service" in req else None
    raw_checks = list(req.get("Checks") or [])
    if "Check" in req:
        raw_checks.append(req["Check"])
    checks = [_check_from(node_name, raw) for raw in raw_checks if raw is not None]
    node_key = node_name.lower()
    on_node = store.node_services.get(node_key, {})
    for check in checks:
        if check.node.lower() != node_key:
            raise RPCError(
                f"Node '{check.node}' for check '{check.check_id}' doesn't match register "
                f"request node '{node_name}'"
            )
        if not check.check_id:
            raise RPCError("Must provide check ID or name")
        if (
            check.service_id
            and not (service is not None and service.id == check.service_id)
            and check.service_id not in on_node
        ):
            raise RPCError(
                f"Unknown service ID '{check.service_id}' for check ID '{check.check_id}'"
            )

    idx = store.next_index()
    node_exists = node_key in store.nodes
    if skip_node and not node_exists and (service is not None or checks):
        store.commit()
        raise RPCError("Missing node registration")
    if not skip_node:
        _ensure_node(
            store,
            idx,
            Node(
                id=node_id,
                node=node_name,
                address=req.get("Address", ""),
                datacenter=store.datacenter,
                tagged_addresses=req.get("TaggedAddresses") or None,
                meta=req.get("NodeMeta") or None,
            ),
        )
    if service is not None:
        _ensure_service(store, idx, service)
    for check in checks:
        _ensure_check(store, idx, check)
    store.commit()


def _ensure_node(store: Store, idx: int, node: Node) -> None:
    key = node.node.lower()
    existing = store.nodes.get(key)
    if existing is not None and same(existing, node):
        return
    node.create_index = existing.create_index if existing is not None else idx
    node.modify_index = idx
    store.nodes[key] = node
    store.touch(idx, "nodes")
    store.touch_node(key)
    for svc in store.services_on_node(key):
        # Service entries carry the node's address: their watchers must see the change.
        store.touch_service(idx, svc.service)


def _ensure_service(store: Store, idx: int, svc: Service) -> None:
    node_key = svc.node.lower()
    on_node = store.node_services.setdefault(node_key, {})
    existing = on_node.get(svc.id)
    svc.node = store.nodes[node_key].node
    if existing is not None and same(existing, svc):
        return
    svc.create_index = existing.create_index if existing is not None else idx
    svc.modify_index = idx
    if existing is not None and existing.service.lower() != svc.service.lower():
        _unindex_service(store, idx, existing)
    on_node[svc.id] = svc
    store.services_by_name.setdefault(svc.service.lower(), {})[(node_key, svc.id)] = svc
    store.touch(idx, "services")
    store.touch_service(idx, svc.service)
    store.touch_node(node_key)
    for check in store.service_checks.get((node_key, svc.id), {}).values():
        check.service_name = svc.service
        check.service_tags = list(svc.tags) if svc.tags is not None else None


def _ensure_check(store: Store, idx: int, check: Check) -> None:
    node_key = check.node.lower()
    check.node = store.nodes[node_key].node
    service: Service | None = None
    if check.service_id:
        service = store.node_services[node_key][check.service_id]
        check.service_name = service.service
        check.service_tags = list(service.tags) if service.tags is not None else None
    on_node = store.node_checks.setdefault(node_key, {})
    existing = on_node.get(check.check_id)
    if existing is None or not same(existing, check):
        check.create_index = existing.create_index if existing is not None else idx
        check.modify_index = idx
        if existing is not None:
            store.service_checks.get((node_key, existing.service_id), {}).pop(
                existing.check_id, None
            )
        on_node[check.check_id] = check
        store.service_checks.setdefault((node_key, check.service_id), {})[check.check_id] = check
        store.touch(idx, "checks")
        _touch_services_of_check(store, idx, node_key, check.service_id)
    if check.status == "critical":
        sessions.invalidate_for_check(store, idx, node_key, check.check_id)


def _touch_services_of_check(store: Store, idx: int, node_key: str, service_id: str) -> None:
    if service_id:
        svc = store.node_services.get(node_key, {}).get(service_id)
        if svc is not None:
            store.touch_service(idx, svc.service)
        return
    for svc in store.services_on_node(node_key):
        store.touch_service(idx, svc.service)


def _unindex_service(store: Store, idx: int, svc: Service) -> None:
    """Drop ``svc`` from the by-name index; the name's index moves or, for its last
    instance, goes away and the extinction index takes over."""
    name_key = svc.service.lower()
    instances = store.services_by_name.get(name_key, {})
    instances.pop((svc.node.lower(), svc.id), None)
    if instances:
        store.touch_service(idx, svc.service)
        return
    store.services_by_name.pop(name_key, None)
    store.service_indexes.pop(name_key, None)
    store.service_list.mark(name_key)
    store.extinction_index = idx
    store.mark(TOPIC_EXTINCTION, service_topic(svc.service))


def deregister(store: Store, req: dict[str, Any]) -> None:
    """``PUT /v1/catalog/deregister``: a service, a check, or (neither given) the node."""
    check_datacenter(store, req.get("Datacenter", ""))
    node_name: str = req.get("Node", "")
    if not node_name:
        raise RPCError("Must provide node")
    idx = store.next_index()
    node_key = node_name.lower()
    service_id: str = req.get("ServiceID", "")
    check_id: str = req.get("CheckID", "")
    if not service_id and not check_id:
        _delete_node(store, idx, node_key)
    else:
        if service_id:
            _delete_service(store, idx, node_key, service_id)
        if check_id:
            _delete_check(store, idx, node_key, check_id)
    store.commit()


def _delete_check(store: Store, idx: int, node_key: str, check_id: str) -> None:
    check = store.node_checks.get(node_key, {}).pop(check_id, None)
    if check is None:
        return
    bucket = store.service_checks.get((node_key, check.service_id), {})
    bucket.pop(check_id, None)
    if not bucket:
        store.service_checks.pop((node_key, check.service_id), None)
    store.touch(idx, "checks")
    _touch_services_of_check(store, idx, node_key, check.service_id)
    sessions.invalidate_for_check(store, idx, node_key, check_id)


def _delete_service(store: Store, idx: int, node_key: str, service_id: str) -> None:
    svc = store.node_services.get(node_key, {}).get(service_id)
    if svc is None:
        return
    for check_id in list(store.service_checks.get((node_key, service_id), {})):
        _delete_check(store, idx, node_key, check_id)
    del store.node_services[node_key][service_id]
    store.touch(idx, "services")
    store.touch_node(node_key)
    _unindex_service(store, idx, svc)


def _delete_node(store: Store, idx: int, node_key: str) -> None:
    if node_key not in store.nodes:
        return
    for service_id in list(store.node_services.get(node_key, {})):
        _delete_service(store, idx, node_key, service_id)
    for check_id in list(store.node_checks.get(node_key, {})):
        _delete_check(store, idx, node_key, check_id)
    store.node_services.pop(node_key, None)
    store.node_checks.pop(node_key, None)
    del store.nodes[node_key]
    store.touch(idx, "nodes")
    store.touch_node(node_key)
    sessions.invalidate_for_node(store, idx, node_key)


# -- reads -----------------------------------------------------------------------------


def parse_node_meta(values: Sequence[str]) -> list[tuple[str, str]]:
    """``?node-meta=key:value`` (repeatable); every pair must match."""
    pairs = []
    for value in values:
        key, _sep, val = value.partition(":")
        pairs.append((key, val))
    return pairs


def node_matches(node: Node, node_meta: Sequence[tuple[str, str]]) -> bool:
    meta = node.meta or {}
    return all(meta.get(k) == v for k, v in node_meta)


def tags_match(svc: Service, tags: Sequence[str]) -> bool:
    """Every wanted tag present, compared case-insensitively as Consul does."""
    have = {t.lower() for t in svc.tags or ()}
    return all(t.lower() in have for t in tags)


def list_services(
    store: Store, node_meta: Sequence[tuple[str, str]] = ()
) -> Result[dict[str, list[str]]]:
    """``GET /v1/catalog/services``: name -> union of tags, sorted by name. Without
    ``node_meta`` the answer comes from ``store.service_list`` (O(changes) per read)."""
    if not node_meta:
        index = store.tables["services"]
        return Result.of(index, (TOPIC_SERVICES,), store.service_list.value(store, index))
    out: dict[str, list[str]] = {}
    for instances in store.services_by_name.values():
        for (node_key, _sid), svc in instances.items():
            if node_meta and not node_matches(store.nodes[node_key], node_meta):
                continue
            tags = out.setdefault(svc.service, [])
            for tag in svc.tags or ():
                if tag not in tags:
                    tags.append(tag)
    index = store.max_table_index("nodes", "services")
    topics = (TOPIC_SERVICES, TOPIC_NODES)
    return Result.of(index, topics, dict(sorted(out.items())))


def service_index(store: Store, name: str, exists: bool, *, checks: bool) -> int:
    """Consul's ``maxIndexForService``."""
    if not exists and store.extinction_index:
        return store.extinction_index
    idx = store.service_indexes.get(name.lower())
    if idx is not None:
        return idx
    tables = ("nodes", "services", "checks") if checks else ("nodes", "services")
    return store.max_table_index(*tables)


def service_topics(store: Store, name: str, exists: bool) -> tuple[str, ...]:
    if exists:
        return (service_topic(name),)
    return (service_topic(name), TOPIC_EXTINCTION, TOPIC_NODES, TOPIC_SERVICES, TOPIC_CHECKS)


def instances(store: Store, name: str) -> list[tuple[Node, Service]]:
    """Every instance of ``name`` with its node, ordered by node then service ID."""
    found = store.services_by_name.get(name.lower(), {})
    return [(store.nodes[nk], svc) for (nk, _sid), svc in sorted(found.items())]


def service_nodes(
    store: Store,
    name: str,
    tags: Sequence[str] = (),
    node_meta: Sequence[tuple[str, str]] = (),
) -> Result[list[tuple[Node, Service]]]:
    """``GET /v1/catalog/service/<name>``."""
    every = instances(store, name)
    exists = bool(every)
    chosen = [
        (node, svc)
        for node, svc in every
        if tags_match(svc, tags) and (not node_meta or node_matches(node, node_meta))
    ]
    return Result.of(
        service_index(store, name, exists, checks=False),
        service_topics(store, name, exists),
        chosen,
    )


def node_services(store: Store, node: str) -> Result[tuple[Node, list[Service]] | None]:
    """``GET /v1/catalog/node/<node>``: the node and its services, or None.

    The index is the catalog's (nodes and services tables), as Consul's; a blocking query
    waits only on this node's topic, so writes to other nodes do not wake it."""
    key = node.lower()
    found = store.nodes.get(key)
    value = None
    if found is not None:
        value = (found, sorted(store.services_on_node(key), key=lambda s: s.id))
    return Result.of(store.max_table_index("nodes", "services"), (node_topic(node),), value)


def checks_for(store: Store, node_key: str, service_id: str) -> list[Check]:
    """Node-level checks first, then the service's, each ordered by check ID."""
    node_level = store.service_checks.get((node_key, ""), {})
    own = store.service_checks.get((node_key, service_id), {}) if service_id else {}
    return [c for _k, c in sorted(node_level.items())] + [c for _k, c in sorted(own.items())]
