"""What the snapshot records about one EndpointSlice endpoint besides its address.

Called by ``gateway.config.clusters`` for each address. The locality follows Istio's
Kubernetes rules, adapted to a local directory that has no Nodes:

- zone: the endpoint's ``zone``, else its ``deprecatedTopology`` key
  ``topology.kubernetes.io/zone``, else that label on the EndpointSlice;
- region: ``deprecatedTopology`` ``topology.kubernetes.io/region``, else the slice label;
- subzone: ``deprecatedTopology`` ``topology.istio.io/subzone``, else the slice label.

The labels (what ``failoverPriority`` compares) are the EndpointSlice's labels, less the two
that only describe the slice (``kubernetes.io/service-name`` and ``endpointslice.
kubernetes.io/managed-by``). The workload
is the ``targetRef`` Pod's name with the suffixes Kubernetes generates removed, as Istio
names workloads: ``web-7c9d8f6b5d-x2x7k`` (a Deployment's Pod: ReplicaSet hash and random
suffix) and ``agent-x2x7k`` (a DaemonSet's or Job's Pod) give ``web`` and ``agent``; other
names (``db-0`` of a StatefulSet) are kept. The service account is not known locally (the
Pod spec is not read); it stays unset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from gateway.config.kinds.core import EndpointSlice, EndpointSliceEndpoint

REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"

_SLICE_ONLY_LABELS = ("kubernetes.io/service-name", "endpointslice.kubernetes.io/managed-by")
# Kubernetes' generated names use this alphabet (no vowels, no 0, 1 or 3).
_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
_DEPLOYMENT_POD = re.compile(rf"^(.+)-{_SAFE}{{6,10}}-{_SAFE}{{5}}$")
_GENERATED_POD = re.compile(rf"^(.+)-{_SAFE}{{5}}$")


def locality(
    endpoint_slice: EndpointSlice, endpoint: EndpointSliceEndpoint
) -> tuple[str | None, str | None, str | None]:
    """``(region, zone, subzone)`` of an endpoint; None where unknown."""
    topology = endpoint.deprecated_topology
    labels = endpoint_slice.metadata.labels

    def pick(key: str, first: str | None = None) -> str | None:
        return first or topology.get(key) or labels.get(key) or None

    return pick(REGION_LABEL), pick(ZONE_LABEL, endpoint.zone), pick(SUBZONE_LABEL)


def labels(endpoint_slice: EndpointSlice) -> tuple[tuple[str, str], ...]:
    """The labels of the slice's endpoints, sorted."""
    found = endpoint_slice.metadata.labels.items()
    return tuple(sorted((k, v) for k, v in found if k not in _SLICE_ONLY_LABELS))


def workload_name(target_ref: Mapping[str, object] | None) -> str | None:
    """The workload behind a ``targetRef``, or None when it does not name a Pod."""
    if not target_ref or target_ref.get("kind", "Pod") != "Pod":
        return None
    name = target_ref.get("name")
    if not isinstance(name, str) or not name:
        return None
    for pattern in (_DEPLOYMENT_POD, _GENERATED_POD):
        found = pattern.match(name)
        if found:
            return found.group(1)
    return name
