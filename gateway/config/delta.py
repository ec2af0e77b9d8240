"""Snapshot deltas: a new snapshot sent as the clusters that changed since one the proxy has.

A mesh proxy's snapshot holds a cluster per Service port it can reach, thousands of them in a
large mesh, and a typical change (an EndpointSlice scaled, a Service exported) touches one.
Sending the whole snapshot for each change costs the controller an encode and the network
and every proxy a full decode per change. Like Envoy's incremental xDS, the control plane
(``federation.snapshots``) therefore answers a proxy that already holds version ``base`` with
a :class:`SnapshotDelta`: the new snapshot's non-cluster parts (ports, limits, node,
telemetry: small), the clusters added or changed, and the names of the clusters removed.

The proxy rebuilds the full snapshot with :func:`apply` and checks it: the result's version
(:func:`gateway.config.snapshot.content_version`, a hash over each cluster's digest) must be
the one the delta names, or :class:`DeltaMismatch` is raised and the proxy asks for the
whole snapshot instead. :class:`Indexed` keeps a snapshot with the digest of each cluster, so
the check hashes only the clusters that changed.
"""

from __future__ import annotations

import bisect

import msgspec

from gateway.config.snapshot import Cluster, Snapshot, Struct, cluster_digest, content_version


class SnapshotDelta(Struct, frozen=True):
    """Version ``version`` of a snapshot, as a change to version ``base``.

    ``head`` is the new snapshot without its clusters (its ``clusters`` is empty);
    ``clusters`` are the clusters that are new or differ from ``base``'s, and ``removed``
    the names of ``base``'s clusters that are gone."""

    base: str
    version: str
    head: Snapshot
    clusters: tuple[Cluster, ...] = ()
    removed: tuple[str, ...] = ()


class DeltaMismatch(Exception):
    """A delta does not apply to the snapshot held, or does not give the version it names."""


class Indexed:
    """A snapshot with the digest of each of its clusters, by name (computed once), and the
    cluster names in order. ``clusters`` and ``digests`` are kept in that order too, so that
    the snapshot's cluster tuple and its version come from their values without lookups."""

    __slots__ = ("clusters", "digests", "names", "snapshot")

    def __init__(
        self,
        snapshot: Snapshot,
        digests: dict[str, bytes] | None = None,
        clusters: dict[str, Cluster] | None = None,
        names: list[str] | None = None,
    ) -> None:
        self.snapshot = snapshot
        # Given parts come from versioned() or apply(), which keep them in name order.
        if clusters is None:
            found = snapshot.cluster_map()
            clusters = {n: found[n] for n in sorted(found)}
        self.clusters = clusters
        self.names = names if names is not None else list(clusters)
        self.digests = (
            digests
            if digests is not None
            else {name: cluster_digest(c) for name, c in clusters.items()}
        )

    @property
    def version(self) -> str:
        return self.snapshot.version

    @classmethod
    def versioned(cls, snapshot: Snapshot, previous: Indexed | None = None) -> Indexed:
        """``snapshot`` with its content version set. Clusters equal to ``previous``'s (same
        name and content) are taken from ``previous``: their digest is not computed again,
        and the two snapshots share the objects, so keeping both costs only what changed."""
        clusters: dict[str, Cluster] = {}
        digests: dict[str, bytes] = {}
        old_clusters = previous.clusters if previous is not None else {}
        old_digests = previous.digests if previous is not None else {}
        for cluster in snapshot.clusters:
            name = cluster.name
            old = old_clusters.get(name)
            if old is not None and (old is cluster or old == cluster):
                cluster = old
                digests[name] = old_digests[name]
            else:
                digests[name] = cluster_digest(cluster)
            clusters[name] = cluster
        names = sorted(clusters)
        if list(clusters) != names:
            clusters = {n: clusters[n] for n in names}
            digests = {n: digests[n] for n in names}
        body = msgspec.structs.replace(snapshot, clusters=tuple(clusters.values()))
        body = msgspec.structs.replace(body, version=content_version(body, digests, names))
        return cls(body, digests, clusters, names)


def diff(old: Indexed, new: Indexed) -> SnapshotDelta:
    """The delta that turns ``old`` into ``new``."""
    old_digests = old.digests
    changed = tuple(
        new.clusters[name]
        for name, digest in new.digests.items()
        if old_digests.get(name) != digest
    )
    removed = tuple(sorted(name for name in old_digests if name not in new.digests))
    return SnapshotDelta(
        base=old.version,
        version=new.version,
        head=msgspec.structs.replace(new.snapshot, clusters=()),
        clusters=changed,
        removed=removed,
    )


def apply(current: Indexed, delta: SnapshotDelta) -> Indexed:
    """The snapshot ``delta`` describes, built on ``current``; checked against its version."""
    if delta.base != current.version:
        raise DeltaMismatch(f"delta from {delta.base} does not apply to {current.version}")
    clusters = dict(current.clusters)
    digests = dict(current.digests)
    names = current.names
    added = [c.name for c in delta.clusters if c.name not in clusters]
    if delta.removed or added:
        names = list(names)
        for name in delta.removed:
            if clusters.pop(name, None) is None:
                raise DeltaMismatch(f"delta removes cluster {name!r}, which {delta.base} lacks")
            del digests[name]
            del names[bisect.bisect_left(names, name)]
        for name in added:
            bisect.insort(names, name)
    for cluster in delta.clusters:
        clusters[cluster.name] = cluster  # an existing name keeps its place
        digests[cluster.name] = cluster_digest(cluster)
    if added:  # new names went to the end of the mappings: put them back in name order
        clusters = {n: clusters[n] for n in names}
        digests = {n: digests[n] for n in names}
    version = content_version(delta.head, digests, names)
    if version != delta.version:
        raise DeltaMismatch(f"delta to {delta.version} gives content version {version}")
    snapshot = msgspec.structs.replace(
        delta.head, version=version, clusters=tuple(clusters.values())
    )
    return Indexed(snapshot, digests, clusters, names)


def encode_delta(delta: SnapshotDelta) -> bytes:
    return msgspec.json.encode(delta)


def decode_delta(data: bytes) -> SnapshotDelta:
    return msgspec.json.decode(data, type=SnapshotDelta)
