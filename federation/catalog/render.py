"""Consul's JSON shapes for the catalog's records.

Called by the routes. Field names, nulls and empty lists follow Consul's Go structs and its
HTTP handlers (``ServiceTags`` and ``Tags`` of null become ``[]``, a node without meta has
``"NodeMeta": null``, a KV value is base64 or null, ``LockDelay`` is in nanoseconds).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from federation.catalog.health import Instance
from federation.catalog.model import Check, KVEntry, Node, Service, Session

_PROXY = {"Mode": "", "MeshGateway": {}, "Expose": {}}


def _weights(svc: Service) -> dict[str, int]:
    w = svc.weights
    return {"Passing": w.passing, "Warning": w.warning} if w else {"Passing": 1, "Warning": 1}


def _tagged(svc: Service) -> dict[str, Any] | None:
    if not svc.tagged_addresses:
        return None
    return {
        k: {"Address": v.address, "Port": v.port} for k, v in sorted(svc.tagged_addresses.items())
    }


def node(n: Node) -> dict[str, Any]:
    return {
        "ID": n.id,
        "Node": n.node,
        "Address": n.address,
        "Datacenter": n.datacenter,
        "TaggedAddresses": n.tagged_addresses,
        "Meta": n.meta,
        "CreateIndex": n.create_index,
        "ModifyIndex": n.modify_index,
    }


def service_node(n: Node, s: Service) -> dict[str, Any]:
    """An entry of ``/v1/catalog/service/<name>``."""
    out: dict[str, Any] = {
        "ID": n.id,
        "Node": n.node,
        "Address": n.address,
        "Datacenter": n.datacenter,
        "TaggedAddresses": n.tagged_addresses,
        "NodeMeta": n.meta,
        "ServiceKind": s.kind,
        "ServiceID": s.id,
        "ServiceName": s.service,
        "ServiceTags": list(s.tags or ()),
        "ServiceAddress": s.address,
    }
    tagged = _tagged(s)
    if tagged is not None:
        out["ServiceTaggedAddresses"] = tagged
    out.update(
        {
            "ServiceWeights": _weights(s),
            "ServiceMeta": s.meta,
            "ServicePort": s.port,
            "ServiceSocketPath": s.socket_path,
            "ServiceEnableTagOverride": s.enable_tag_override,
            "ServiceProxy": _PROXY,
            "ServiceConnect": {},
            "CreateIndex": s.create_index,
            "ModifyIndex": s.modify_index,
        }
    )
    return out


def service(s: Service) -> dict[str, Any]:
    """A ``NodeService`` (health entries, ``/v1/catalog/node/<node>``)."""
    out: dict[str, Any] = {
        "ID": s.id,
        "Service": s.service,
        "Tags": list(s.tags or ()),
        "Address": s.address,
    }
    if s.kind:
        out = {"Kind": s.kind, **out}
    tagged = _tagged(s)
    if tagged is not None:
        out["TaggedAddresses"] = tagged
    out.update(
        {
            "Meta": s.meta,
            "Port": s.port,
            "Weights": _weights(s),
            "EnableTagOverride": s.enable_tag_override,
            "Proxy": _PROXY,
            "Connect": {},
            "CreateIndex": s.create_index,
            "ModifyIndex": s.modify_index,
        }
    )
    return out


def check(c: Check) -> dict[str, Any]:
    return {
        "Node": c.node,
        "CheckID": c.check_id,
        "Name": c.name,
        "Status": c.status,
        "Notes": c.notes,
        "Output": c.output,
        "ServiceID": c.service_id,
        "ServiceName": c.service_name,
        "ServiceTags": list(c.service_tags or ()),
        "Type": c.type,
        "Interval": c.interval,
        "Timeout": c.timeout,
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    }


def health_entry(inst: Instance) -> dict[str, Any]:
    return {
        "Node": node(inst.node),
        "Service": service(inst.service),
        "Checks": [check(c) for c in inst.checks],
    }


def node_services(
    n: Node, services: list[Service], render: Callable[[Service], dict[str, Any]] = service
) -> dict[str, Any]:
    """``/v1/catalog/node/<node>``; ``render`` may be a caching ``service``."""
    return {"Node": node(n), "Services": {s.id: render(s) for s in services}}


def dir_entry(e: KVEntry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "LockIndex": e.lock_index,
        "Key": e.key,
        "Flags": e.flags,
        "Value": base64.b64encode(e.value).decode("ascii") if e.value is not None else None,
    }
    if e.session:
        out["Session"] = e.session
    out["CreateIndex"] = e.create_index
    out["ModifyIndex"] = e.modify_index
    return out


def session(s: Session) -> dict[str, Any]:
    return {
        "ID": s.id,
        "Name": s.name,
        "Node": s.node,
        "LockDelay": s.lock_delay_ns,
        "Behavior": s.behavior,
        "TTL": s.ttl,
        "NodeChecks": s.node_checks,
        "ServiceChecks": (
            [{"ID": c.id, "Namespace": c.namespace} for c in s.service_checks]
            if s.service_checks is not None
            else None
        ),
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    }
