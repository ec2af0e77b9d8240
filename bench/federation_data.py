"""The federation bench's workload: the Kubernetes objects of each cluster, and the changes.

Used by ``bench.federation_kube`` (which loads the objects into the API doubles and applies
the changes) and ``bench.federation_bench`` (which knows what each change must do to a
proxy's snapshot). Pure data: no I/O.

Each cluster gets its share of the services (10,000 over 3 clusters: 3,334 + 3,333 + 3,333),
spread over ``NAMESPACES`` namespaces. Every service is a ``Service`` (one port 80/http,
targetPort 8080), an ``EndpointSlice`` with two ready endpoints, and a ``ServiceExport``, so
that every service is exported to every other cluster: each controller imports the services
of the two other clusters.

The changes of the latency phase cycle through three kinds, each seen by the proxies of the
subscribed cluster (``clusters[0]``):

- ``scale``: an EndpointSlice of a local service gets 1 or 3 endpoints (a local change);
- ``export``: another cluster exports a service it already has (a ``ServiceExport`` is
  created; the Service and EndpointSlice are created during setup, untimed);
- ``unexport``: another cluster deletes one of its ``ServiceExport`` objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

NAMESPACES = 10
PORT = 80
MCS = "multicluster.x-k8s.io/v1alpha1"


def shares(total: int, clusters: int) -> list[int]:
    """``total`` services split over ``clusters`` (the first ones get the remainder)."""
    base, extra = divmod(total, clusters)
    return [base + (1 if i < extra else 0) for i in range(clusters)]


def service_name(cluster: str, index: int) -> tuple[str, str]:
    """(namespace, name) of a cluster's ``index``-th service."""
    return f"bench-{index % NAMESPACES}", f"{cluster}-svc-{index:05d}"


def extra_name(cluster: str, index: int) -> tuple[str, str]:
    """(namespace, name) of a service created unexported, for the ``export`` changes."""
    return f"bench-{index % NAMESPACES}", f"{cluster}-extra-{index:03d}"


def _address(cluster_no: int, index: int, n: int) -> str:
    return f"10.{cluster_no + 1}.{(index >> 8) & 255}.{(index & 255)}" if n == 0 else (
        f"10.{cluster_no + 101}.{(index >> 8) & 255}.{(index & 255) ^ (n & 255)}"
    )  # fmt: skip


def service(namespace: str, name: str) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": [{"name": "http", "port": PORT, "targetPort": 8080,
                            "protocol": "TCP"}]},
    }  # fmt: skip


def endpoint_slice(namespace: str, name: str, addresses: list[str]) -> Obj:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-abcde", "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }  # fmt: skip


def service_export(namespace: str, name: str) -> Obj:
    return {"apiVersion": MCS, "kind": "ServiceExport",
            "metadata": {"name": name, "namespace": namespace}}  # fmt: skip


def addresses(cluster_no: int, index: int, count: int) -> list[str]:
    return [_address(cluster_no, index, n) for n in range(count)]


def cluster_objects(cluster: str, cluster_no: int, count: int, extras: int) -> list[Obj]:
    """Every object of one cluster: ``count`` exported services, ``extras`` unexported."""
    out: list[Obj] = []
    for i in range(count):
        ns, name = service_name(cluster, i)
        out += [service(ns, name), endpoint_slice(ns, name, addresses(cluster_no, i, 2)),
                service_export(ns, name)]  # fmt: skip
    for i in range(extras):
        ns, name = extra_name(cluster, i)
        out += [service(ns, name), endpoint_slice(ns, name, addresses(cluster_no, 50_000 + i, 2))]
    return out


@dataclass(frozen=True, slots=True)
class Change:
    """One timed write and what it must do to the subscribed proxies' snapshot.

    ``op`` is ``apply`` or ``delete`` on the API double of ``cluster``; the snapshot then has
    the cluster ``cluster_name`` with ``endpoints`` endpoints (``None``: the cluster is
    gone)."""

    kind: str  # scale | export | unexport
    op: str
    cluster: str
    obj: Obj
    cluster_name: str
    endpoints: int | None

    def command(self) -> Obj:
        return {"op": self.op, "cluster": self.cluster, "obj": self.obj}

    def describe(self) -> str:
        meta = self.obj["metadata"]
        return f"{self.kind} {self.cluster} {meta['namespace']}/{meta['name']}"


def changes(clusters: list[str], counts: list[int], n: int) -> list[Change]:
    """``n`` changes cycling scale (in ``clusters[0]``), export and unexport (in the others)."""
    local = clusters[0]
    others = clusters[1:] or clusters[:1]
    out: list[Change] = []
    for i in range(n):
        kind = ("scale", "export", "unexport")[i % 3]
        round_no = i // 3
        if kind == "scale":
            index = (round_no * 97) % counts[0]
            ns, name = service_name(local, index)
            size = 3 if round_no % 2 == 0 else 1
            out.append(Change(kind, "apply", local,
                              endpoint_slice(ns, name, addresses(0, index, size)),
                              f"{ns}/{name}:{PORT}", size))  # fmt: skip
        elif kind == "export":
            cluster = others[round_no % len(others)]
            ns, name = extra_name(cluster, round_no)
            out.append(Change(kind, "apply", cluster, service_export(ns, name),
                              f"{ns}/{name}.clusterset:{PORT}", 1))  # fmt: skip
        else:
            cluster = others[(round_no + 1) % len(others)]
            cno = clusters.index(cluster)
            index = (round_no * 131 + 7) % counts[cno]
            ns, name = service_name(cluster, index)
            out.append(Change(kind, "delete", cluster, service_export(ns, name),
                              f"{ns}/{name}.clusterset:{PORT}", None))  # fmt: skip
    return out


def extras_needed(n_changes: int) -> int:
    """Unexported services each cluster needs for ``n_changes`` changes."""
    return n_changes // 3 + 1
