"""What this cluster exports: the local Services that a ``ServiceExport`` publishes to the mesh.

Called by the controller (and so Consul sync, ``federation.consul.export``) with the
:class:`~federation.sources.store.ObjectStore`; :func:`exports_from` is the pure rule, for
tests and for callers that already hold the pieces. The rule (MCS API, plus one annotation):

- a ``ServiceExport`` exports the Service of the same namespace and name; without that
  Service (or when the Service failed validation, so that the proxies have no cluster for
  it) nothing is exported;
- the ports are the Service's TCP ports (the mesh carries no UDP or SCTP), with their
  ``appProtocol``;
- ``ready_endpoints`` counts the distinct ready addresses (``conditions.ready`` unset means
  ready) over every EndpointSlice labelled ``kubernetes.io/service-name=<name>`` in the
  namespace; a Service without ready endpoints is still exported, with 0;
- the ``isthmus.dev/export-to`` annotation of the ServiceExport (comma-separated cluster
  names) limits who may import it; absent or blank means every cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from federation.model import EXPORT_TO_ANNOTATION, ExportedService, ServicePort
from federation.sources.kinds import SERVICE_EXPORT
from gateway.config.kinds import EndpointSlice, Service
from gateway.config.resources import Resources

Obj = dict[str, Any]


class ExportView(Protocol):
    """What :func:`local_exports` reads (an ``ObjectStore`` is one)."""

    def items(self, kind: str) -> list[Obj]: ...

    def resources(self) -> Resources: ...


def local_exports(store: ExportView) -> list[ExportedService]:
    """The services this cluster exports, sorted by namespace and name."""
    return exports_from(store.items(SERVICE_EXPORT), store.resources())


def exports_from(service_exports: Iterable[Obj], resources: Resources) -> list[ExportedService]:
    services = {(s.namespace, s.name): s for s in resources.of_kind(Service)}
    ready: dict[tuple[str, str], set[str]] = {}
    for endpoint_slice in resources.of_kind(EndpointSlice):
        addresses = ready.setdefault((endpoint_slice.namespace, endpoint_slice.service_name), set())
        for endpoint in endpoint_slice.endpoints:
            if endpoint.conditions.ready is not False:
                addresses.add(endpoint.addresses[0])
    out = []
    for export in service_exports:
        meta = export.get("metadata")
        if not isinstance(meta, dict):
            continue
        name = meta.get("name")
        namespace = meta.get("namespace") or "default"
        service = services.get((namespace, name)) if isinstance(name, str) else None
        if service is None:
            continue
        ports = tuple(
            ServicePort(name=p.name, port=p.port, app_protocol=p.app_protocol)
            for p in service.spec.ports
            if p.protocol == "TCP"
        )
        annotations = meta.get("annotations")
        out.append(
            ExportedService(
                namespace=service.namespace,
                name=service.name,
                ports=ports,
                ready_endpoints=len(ready.get((service.namespace, service.name), ())),
                export_to=_export_to(annotations if isinstance(annotations, dict) else {}),
            )
        )
    return sorted(out, key=lambda e: (e.namespace, e.name))


def _export_to(annotations: dict[str, Any]) -> tuple[str, ...]:
    value = annotations.get(EXPORT_TO_ANNOTATION)
    if not isinstance(value, str):
        return ()
    return tuple(sorted({part.strip() for part in value.split(",") if part.strip()}))
