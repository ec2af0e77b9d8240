"""The kinds the federation controller reads, and how a source cleans an object before storing it.

Used by every source (``federation.sources.kube``, ``federation.sources.directory``) and by
:class:`~federation.sources.store.ObjectStore` (which kinds are namespaced). The kinds are:

- the configuration kinds the proxy understands (``gateway.config.kinds.KINDS``), validated
  into ``Resources`` by the store; Secrets only of type ``kubernetes.io/tls``;
- ``ServiceExport`` (MCS), which ``federation.exports`` reads;
- ``Pod`` (trimmed to its service account, node, addresses and labels) and ``Node`` (trimmed
  to its topology labels), which the snapshots read for identities and localities.

A kind name is unique across the groups we read, so the store keys objects by
``(kind, namespace, name)`` like ``gateway.config.resources.ObjectKey``.

Objects from an API server carry bookkeeping the loader would reject or that only costs
memory; :func:`clean` strips it (the loader itself stays strict for hand-written YAML):
``metadata.generateName`` (set on every controller-made EndpointSlice and Pod; the server
always sets ``name``), ``selfLink``, ``managedFields``, the ``last-applied-configuration``
annotation, and the EndpointSlice controller's topology ``hints``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.config.kinds import KINDS
from gateway.config.kinds.secret import TLS_TYPE

Obj = dict[str, Any]

SERVICE = "Service"
ENDPOINT_SLICE = "EndpointSlice"
SERVICE_EXPORT = "ServiceExport"
POD = "Pod"
NODE = "Node"
SECRET = "Secret"

MCS_API_VERSION = "multicluster.x-k8s.io/v1alpha1"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_NOISE_METADATA = ("managedFields", "selfLink", "generateName")
_TOPOLOGY_PREFIXES = ("topology.kubernetes.io/", "topology.istio.io/", "failure-domain.beta.")

# Resource names (plurals) of the configuration kinds; a kind added to KINDS must be added
# here too (a test checks it).
PLURALS: dict[str, str] = {
    "Service": "services",
    "EndpointSlice": "endpointslices",
    "Secret": "secrets",
    "GatewayClass": "gatewayclasses",
    "Gateway": "gateways",
    "ReferenceGrant": "referencegrants",
    "HTTPRoute": "httproutes",
    "GRPCRoute": "grpcroutes",
    "TLSRoute": "tlsroutes",
    "ProxySettings": "proxysettings",
    "DestinationRule": "destinationrules",
    "RateLimit": "ratelimits",
    "Fault": "faults",
    "AuthorizationPolicy": "authorizationpolicies",
    "RequestAuthentication": "requestauthentications",
    "PeerAuthentication": "peerauthentications",
}


@dataclass(frozen=True, slots=True)
class SourceKind:
    """One kind a source reads. ``api_versions`` are tried in order against an API server
    (the first one it serves wins); any of them is accepted from a file."""

    kind: str
    api_versions: tuple[str, ...]
    plural: str
    namespaced: bool = True
    field_selector: str | None = None
    trim: Callable[[Obj], Obj] | None = None
    config: bool = False  # validated into Resources (a gateway.config kind)


def _trim_pod(obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    out: Obj = {
        "apiVersion": obj.get("apiVersion", "v1"),
        "kind": POD,
        "metadata": _pick(meta, ("name", "namespace", "uid", "resourceVersion", "labels")),
        "spec": _pick(spec, ("serviceAccountName", "nodeName")),
        "status": _pick(status, ("phase", "podIP", "podIPs")),
    }
    return out


def _trim_node(obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    topology = {
        k: v for k, v in labels.items() if isinstance(k, str) and k.startswith(_TOPOLOGY_PREFIXES)
    }
    trimmed_meta = _pick(meta, ("name", "uid", "resourceVersion"))
    trimmed_meta["labels"] = topology
    return {"apiVersion": obj.get("apiVersion", "v1"), "kind": NODE, "metadata": trimmed_meta}


def _pick(source: Any, keys: tuple[str, ...]) -> Obj:
    if not isinstance(source, dict):
        return {}
    return {k: source[k] for k in keys if k in source}


def _config_kinds() -> tuple[SourceKind, ...]:
    out = []
    for name, cls in KINDS.items():
        out.append(
            SourceKind(
                name,
                cls.api_versions,
                PLURALS.get(name, name.lower() + "s"),
                namespaced=cls.namespaced,
                field_selector=f"type={TLS_TYPE}" if name == SECRET else None,
                config=True,
            )
        )
    return tuple(out)


SOURCE_KINDS: tuple[SourceKind, ...] = (
    *_config_kinds(),
    SourceKind(SERVICE_EXPORT, (MCS_API_VERSION,), "serviceexports"),
    SourceKind(POD, ("v1",), "pods", trim=_trim_pod),
    SourceKind(NODE, ("v1",), "nodes", namespaced=False, trim=_trim_node),
)
BY_KIND: dict[str, SourceKind] = {k.kind: k for k in SOURCE_KINDS}


def is_namespaced(kind: str) -> bool:
    found = BY_KIND.get(kind)
    return True if found is None else found.namespaced


def clean(obj: Obj, kind: SourceKind, api_version: str) -> Obj:
    """The object as the store keeps it: ``kind``/``apiVersion`` set (typed list items lack
    them), server noise stripped, trimmed for Pods and Nodes. Copies what it changes."""
    out = dict(obj)
    out["kind"] = kind.kind
    out.setdefault("apiVersion", api_version)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if k not in _NOISE_METADATA}
        annotations = meta.get("annotations")
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:
            meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
        out["metadata"] = meta
    if kind.kind == ENDPOINT_SLICE and isinstance(out.get("endpoints"), list):
        out["endpoints"] = [
            {k: v for k, v in e.items() if k != "hints"} if isinstance(e, dict) else e
            for e in out["endpoints"]
        ]
    if kind.trim is not None:
        out = kind.trim(out)
    return out
