"""What Consul sync writes and reads, as plain data: no I/O, no asyncio.

Called by ``export`` (the registrations it wants and the diff against its node, ``plan``)
and by ``imports`` (Consul health entries back into ``ImportedService`` values, the remote
clusters' heartbeats).

The cluster's node ``isthmus-<cluster>`` has the east-west gateway's address and holds:

- one service per ``ExportedService``: ID and name ``<name>-<namespace>``, tag
  ``isthmus``, the gateway's address and port, and model.py's Meta (cluster, namespace,
  name, ports as JSON, trust domain, locality, ready endpoint count, export-to when
  limited);
- one heartbeat service ``isthmus--controller`` (tag ``isthmus-controller``; no Kubernetes
  name can produce it: ``<name>-<namespace>`` never has a name ending, or a namespace
  starting, with ``-``) carrying a check ``isthmus-heartbeat`` whose Output the leader
  rewrites every heartbeat interval. Its Meta says the heartbeat TTL. The heartbeat lives
  on its own service, not on the node, so that a heartbeat wakes only the watchers of that
  one service, not those of every exported service.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from federation.model import (
    META_CLUSTER,
    META_EXPORT_TO,
    META_LOCALITY,
    META_NAME,
    META_NAMESPACE,
    META_PORTS,
    META_READY,
    META_TRUST_DOMAIN,
    ExportedService,
    ImportedService,
    ServicePort,
    consul_service_name,
)

EXPORT_TAG = "isthmus"
HEARTBEAT_SERVICE = "isthmus--controller"
HEARTBEAT_TAG = "isthmus-controller"
HEARTBEAT_CHECK = "isthmus-heartbeat"
META_HEARTBEAT_TTL = "isthmus-heartbeat-ttl"  # seconds, decimal

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class ClusterIdentity:
    """Who the local cluster is in Consul: its name and its east-west gateway."""

    cluster: str
    gateway_address: str
    gateway_port: int
    trust_domain: str
    locality: str = ""

    @property
    def node(self) -> str:
        return f"isthmus-{self.cluster}"


def ports_json(ports: Iterable[ServicePort]) -> str:
    return _ports_json(tuple(ports))


@functools.lru_cache(maxsize=4096)
def _ports_json(ports: tuple[ServicePort, ...]) -> str:
    """Cached: most services share a handful of port layouts."""
    return json.dumps(
        [{"name": p.name, "port": p.port, "appProtocol": p.app_protocol} for p in ports],
        separators=(",", ":"),
    )


@functools.lru_cache(maxsize=4096)
def parse_ports(text: str) -> tuple[ServicePort, ...]:
    """The ``isthmus-ports`` Meta value; ValueError when it is not the documented shape.
    Cached: most services share a handful of port layouts, and an importer parses every
    service of a remote cluster once (the result is immutable)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{META_PORTS} is not JSON: {exc}") from None
    if not isinstance(raw, list):
        raise ValueError(f"{META_PORTS} must be a JSON list")
    out: list[ServicePort] = []
    for item in raw:
        if not isinstance(item, dict):
            raise ValueError(f"{META_PORTS} items must be objects")
        port, name, proto = item.get("port"), item.get("name"), item.get("appProtocol")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f"{META_PORTS}: bad port {port!r}")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"{META_PORTS}: bad name {name!r}")
        if proto is not None and not isinstance(proto, str):
            raise ValueError(f"{META_PORTS}: bad appProtocol {proto!r}")
        out.append(ServicePort(name=name, port=port, app_protocol=proto))
    return tuple(out)


def service_registration(exp: ExportedService, ident: ClusterIdentity) -> dict[str, Any]:
    """The ``Service`` body that publishes ``exp``."""
    sid = consul_service_name(exp.namespace, exp.name)
    meta = {
        META_CLUSTER: ident.cluster,
        META_NAMESPACE: exp.namespace,
        META_NAME: exp.name,
        META_PORTS: ports_json(exp.ports),
        META_TRUST_DOMAIN: ident.trust_domain,
        META_LOCALITY: ident.locality,
        META_READY: str(exp.ready_endpoints),
    }
    if exp.export_to:
        meta[META_EXPORT_TO] = ",".join(exp.export_to)
    return {
        "ID": sid,
        "Service": sid,
        "Tags": [EXPORT_TAG],
        "Address": ident.gateway_address,
        "Port": ident.gateway_port,
        "Meta": meta,
    }


def heartbeat_registration(ident: ClusterIdentity, ttl_s: float) -> dict[str, Any]:
    return {
        "ID": HEARTBEAT_SERVICE,
        "Service": HEARTBEAT_SERVICE,
        "Tags": [HEARTBEAT_TAG],
        "Address": ident.gateway_address,
        "Port": ident.gateway_port,
        "Meta": {META_CLUSTER: ident.cluster, META_HEARTBEAT_TTL: f"{ttl_s:g}"},
    }


def heartbeat_check(output: str, ttl_s: float) -> dict[str, Any]:
    return {
        "CheckID": HEARTBEAT_CHECK,
        "Name": "isthmus federation controller heartbeat",
        "Status": "passing",
        "ServiceID": HEARTBEAT_SERVICE,
        "Notes": f"TTL {ttl_s:g}s: stale when Output has not changed for that long",
        "Output": output,
    }


def desired_services(
    exports: Iterable[ExportedService], ident: ClusterIdentity, heartbeat_ttl_s: float
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Service ID -> registration, plus one message per export dropped: a namespace or
    name that is not a Kubernetes DNS label, or a Consul name another export already has
    (``a-b``/``c`` and ``a``/``b-c`` both make ``a-b-c``; the first in namespace/name order
    wins)."""
    out: dict[str, dict[str, Any]] = {
        HEARTBEAT_SERVICE: heartbeat_registration(ident, heartbeat_ttl_s)
    }
    owners: dict[str, tuple[str, str]] = {}
    problems: list[str] = []
    for exp in sorted(exports, key=lambda e: (e.namespace, e.name)):
        if not (_DNS_LABEL.fullmatch(exp.namespace) and _DNS_LABEL.fullmatch(exp.name)):
            problems.append(f"{exp.namespace!r}/{exp.name!r} not exported: not DNS labels")
            continue
        reg = service_registration(exp, ident)
        sid = reg["ID"]
        if sid in out:
            first = owners.get(sid, ("", HEARTBEAT_SERVICE))
            problems.append(
                f"{exp.namespace}/{exp.name} not exported: its Consul name {sid} is already "
                f"used by {first[0]}/{first[1]}"
            )
            continue
        owners[sid] = (exp.namespace, exp.name)
        out[sid] = reg
    return out, problems


def _observed(svc: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        svc.get("Service") or "",
        list(svc.get("Tags") or ()),
        svc.get("Address") or "",
        int(svc.get("Port") or 0),
        dict(svc.get("Meta") or {}),
    )


def differs(desired: Mapping[str, Any], observed: Mapping[str, Any] | None) -> bool:
    return observed is None or _observed(desired) != _observed(observed)


@dataclass(slots=True)
class Plan:
    """The writes that bring the node to the desired state."""

    register: list[dict[str, Any]] = field(default_factory=list)
    deregister: list[str] = field(default_factory=list)
    # Drift kept on purpose: updates and removals wait for the local sources' first list.
    held_back: int = 0

    @property
    def empty(self) -> bool:
        return not self.register and not self.deregister


def plan(
    desired: Mapping[str, dict[str, Any]],
    node: Mapping[str, Any] | None,
    ident: ClusterIdentity,
    *,
    synced: bool,
) -> Plan:
    """Diff ``desired`` against ``/v1/catalog/node/<node>``'s answer.

    Before ``synced`` only missing services are added: nothing is updated (the local view
    may be partial, e.g. a lower ready count) and nothing is removed. Every service on the
    node that is not desired is removed once synced: the node is this cluster's alone.
    """
    observed: Mapping[str, Any] = (node or {}).get("Services") or {}
    node_info: Mapping[str, Any] = (node or {}).get("Node") or {}
    node_moved = node is not None and node_info.get("Address") != ident.gateway_address
    out = Plan()
    for sid, reg in desired.items():
        have = observed.get(sid)
        if have is None:
            out.register.append(reg)
        elif differs(reg, have) or node_moved:
            if synced:
                out.register.append(reg)
            else:
                out.held_back += 1
    for sid in sorted(observed):
        if sid not in desired:
            if synced:
                out.deregister.append(sid)
            else:
                out.held_back += 1
    return out


def plan_changes(
    desired: Mapping[str, dict[str, Any]], written: Mapping[str, dict[str, Any]]
) -> Plan:
    """Diff ``desired`` against ``written``, the registrations a complete earlier pass left
    on the node (so the node is not read again for a local change)."""
    out = Plan()
    for sid, reg in desired.items():
        if written.get(sid) != reg:
            out.register.append(reg)
    out.deregister.extend(sorted(written.keys() - desired.keys()))
    return out


# -- reading other clusters' entries -----------------------------------------------------


def imported_from_entry(
    entry: Mapping[str, Any], own_cluster: str
) -> tuple[tuple[str, str, str], ImportedService] | None:
    """One ``/v1/health/service/<name>`` entry as an import, or None when it is not for us
    (our own cluster, not an isthmus export, or exported to other clusters only).
    Raises ValueError when it claims to be an isthmus export but its Meta is malformed."""
    svc: Mapping[str, Any] = entry.get("Service") or {}
    node: Mapping[str, Any] = entry.get("Node") or {}
    meta: Mapping[str, Any] = svc.get("Meta") or {}
    cluster, namespace, name = meta.get(META_CLUSTER), meta.get(META_NAMESPACE), meta.get(META_NAME)
    if not cluster or not namespace or not name or cluster == own_cluster:
        return None
    export_to = meta.get(META_EXPORT_TO)
    if export_to and own_cluster not in [c.strip() for c in str(export_to).split(",")]:
        return None
    ports = parse_ports(str(meta.get(META_PORTS, "[]")))
    ready_text = str(meta.get(META_READY, "0") or "0")
    if not ready_text.isdigit():
        raise ValueError(f"{META_READY} is not a count: {ready_text!r}")
    address = svc.get("Address") or node.get("Address") or ""
    port = svc.get("Port")
    if not address or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"no usable gateway address/port ({address!r}, {port!r})")
    checks = entry.get("Checks") or []
    passing = all(isinstance(c, Mapping) and c.get("Status") == "passing" for c in checks)
    imp = ImportedService(
        cluster=str(cluster),
        namespace=str(namespace),
        name=str(name),
        ports=ports,
        gateway_address=str(address),
        gateway_port=port,
        trust_domain=str(meta.get(META_TRUST_DOMAIN, "")),
        locality=str(meta.get(META_LOCALITY, "")),
        ready_endpoints=int(ready_text),
        healthy=passing,
    )
    return (imp.cluster, imp.namespace, imp.name), imp


def with_health(imp: ImportedService, cluster_alive: bool) -> ImportedService:
    healthy = imp.healthy and cluster_alive
    return imp if healthy == imp.healthy else msgspec.structs.replace(imp, healthy=healthy)


@dataclass(frozen=True, slots=True)
class Beat:
    """A remote cluster's heartbeat as last read."""

    output: str
    passing: bool
    ttl_s: float


def beats_from_entries(entries: Iterable[Mapping[str, Any]], own_cluster: str) -> dict[str, Beat]:
    out: dict[str, Beat] = {}
    for entry in entries:
        svc: Mapping[str, Any] = entry.get("Service") or {}
        meta: Mapping[str, Any] = svc.get("Meta") or {}
        cluster = meta.get(META_CLUSTER)
        if not cluster or cluster == own_cluster:
            continue
        try:
            ttl = float(meta.get(META_HEARTBEAT_TTL, "30"))
        except ValueError:
            ttl = 30.0
        checks = [c for c in entry.get("Checks") or [] if isinstance(c, Mapping)]
        beat = [c for c in checks if c.get("CheckID") == HEARTBEAT_CHECK]
        passing = bool(beat) and all(c.get("Status") == "passing" for c in checks)
        output = str(beat[0].get("Output", "")) if beat else ""
        out[str(cluster)] = Beat(output=output, passing=passing, ttl_s=max(ttl, 1.0))
    return out
