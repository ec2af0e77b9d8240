"""The federation controller's shared vocabulary: what a cluster exports and imports.

The parts of the controller meet on these types:

- the **sources** (``federation.sources``) keep the cluster's objects in an
  :class:`~federation.sources.store.ObjectStore`; :func:`federation.exports.local_exports`
  derives the :class:`ExportedService` list from it (a ``ServiceExport`` plus its Service and
  EndpointSlices);
- **Consul sync** (``federation.consul``) writes the local exports under the cluster's own node
  and reads every other cluster's into :class:`ImportedService` values;
- **snapshot compilation** (``federation.snapshots``) turns the local objects plus the imports
  into one gateway ``Snapshot`` per proxy.

Naming (DESIGN.md §5): the Consul node of a cluster is ``isthmus-<cluster>``, its address is
the cluster's east-west gateway; each exported service is the Consul service
``<name>-<namespace>`` on it, with the Meta keys below.
"""

from __future__ import annotations

import msgspec

# Consul Meta keys of an exported service (values are strings; Consul Meta is string-only).
META_CLUSTER = "isthmus-cluster"
META_NAMESPACE = "isthmus-namespace"
META_NAME = "isthmus-name"
META_PORTS = "isthmus-ports"  # JSON list of {"name", "port", "appProtocol"}
META_TRUST_DOMAIN = "isthmus-trust-domain"
META_LOCALITY = "isthmus-locality"  # region/zone/subzone of the cluster's gateway
META_READY = "isthmus-ready-endpoints"  # decimal count
META_EXPORT_TO = "isthmus-export-to"  # comma-separated cluster names; absent: every cluster

# ServiceExport annotation limiting which clusters may import a service (the MCS API cannot
# say this yet): a comma-separated list of cluster names.
EXPORT_TO_ANNOTATION = "isthmus.dev/export-to"


def node_name(cluster: str) -> str:
    return f"isthmus-{cluster}"


def consul_service_name(namespace: str, name: str) -> str:
    return f"{name}-{namespace}"


def clusterset_host(namespace: str, name: str) -> str:
    """The name other clusters reach an exported service by (MCS)."""
    return f"{name}.{namespace}.svc.clusterset.local"


def service_sni(namespace: str, name: str, port: int, domain: str = "cluster.local") -> str:
    """Istio's AUTO_PASSTHROUGH SNI, which the destination's east-west gateway routes on."""
    return f"outbound_.{port}_._.{name}.{namespace}.svc.{domain}"


class ServicePort(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    name: str | None
    port: int
    app_protocol: str | None = None


class ExportedService(msgspec.Struct, frozen=True, kw_only=True):
    """A local Service that a ``ServiceExport`` publishes to the mesh."""

    namespace: str
    name: str
    ports: tuple[ServicePort, ...]
    ready_endpoints: int
    export_to: tuple[str, ...] = ()  # empty: every cluster


class ImportedService(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A service another cluster exports, as its Consul entry describes it. Requests reach
    it through ``gateway_address:gateway_port`` (that cluster's east-west gateway) with the
    service's SNI."""

    cluster: str
    namespace: str
    name: str
    ports: tuple[ServicePort, ...]
    gateway_address: str
    gateway_port: int
    trust_domain: str
    locality: str = ""
    ready_endpoints: int = 0
    healthy: bool = True  # the exporting cluster's TTL check is passing
