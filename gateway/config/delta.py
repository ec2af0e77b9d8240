"""Snapshot deltas: a new snapshot sent as the clusters that changed since one the proxy has.

A mesh proxy's snapshot holds a cluster per Service port it can reach, thousands of them in a
large mesh, and a typical change (an EndpointSlice scaled, a Service exported) touches one.
Sending the whole snapshot for each change costs the controller an encode and the network
and every proxy a full decode per change. Like Envoy's incremental xDS, the control plane
(``federation.snapshots``) therefore answers a proxy that already holds version ``base`` with
a :class:`SnapshotDelta`: the new snapshot's non-cluster parts (ports, limits, node,
telemetry: small), the clusters added or changed, and the names of the clusters removed.

The proxy rebuilds the full snapshot with :func:`apply` and checks it: the result's version
(:func:`gateway.config.snapshot.content_version`, a hash over the sum of the clusters'
digests) must be the one the delta names, or :class:`DeltaMismatch` is raised and the proxy
asks for the whole snapshot instead. :class:`Indexed` keeps a snapshot with the digest of
each cluster and their sum, so the check hashes only the clusters that changed.
"""

from __future__ import annotations

import msgspec

from gateway.config.snapshot import (
    Cluster,
    Snapshot,
    Struct,
    add_digests,
    cluster_digest,
    content_version,
    digest_sum,
)


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
    """A snapshot with each of its clusters and their digests by name (computed once), and
    the sum of those digests (:func:`~gateway.config.snapshot.digest_sum`), so that a delta
    updates the version from the clusters that changed alone."""

    __slots__ = ("clusters", "digest_total", "digests", "snapshot")

    def __init__(
        self,
        snapshot: Snapshot,
        digests: dict[str, bytes] | None = None,
        clusters: dict[str, Cluster] | None = None,
        digest_total: int | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.clusters = clusters if clusters is not None else snapshot.cluster_map()
        if digests is None:
            digests = {name: cluster_digest(c) for name, c in self.clusters.items()}
        self.digests = digests
        self.digest_total = digest_total if digest_total is not None else digest_sum(digests)

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
        added: list[bytes] = []
        replaced: list[bytes] = []
        for cluster in snapshot.clusters:
            name = cluster.name
            old = old_clusters.get(name)
            if old is not None and (old is cluster or old == cluster):
                cluster = old
                digests[name] = old_digests[name]
            else:
                digest = digests[name] = cluster_digest(cluster)
                added.append(digest)
                if old is not None:
                    replaced.append(old_digests[name])
            clusters[name] = cluster
        if previous is None or len(clusters) != len(snapshot.clusters):
            total = digest_sum(digests)  # first version, or a name twice: count from scratch
        else:
            gone = [old_digests[n] for n in old_digests.keys() - digests.keys()]
            total = add_digests(previous.digest_total, added, replaced + gone)
        body = msgspec.structs.replace(snapshot, clusters=tuple(clusters.values()))
        body = msgspec.structs.replace(body, version=content_version(body, total))
        return cls(body, digests, clusters, total)


def diff(old: Indexed, new: Indexed) -> SnapshotDelta:
    """The delta that turns ``old`` into ``new``."""
    old_digests = old.digests
    changed = tuple(
        new.clusters[name]
        for name, digest in new.digests.items()
        if old_digests.get(name) != digest
    )
    removed = tuple(sorted(old_digests.keys() - new.digests.keys()))
    return SnapshotDelta(
        base=old.version,
        version=new.version,
        head=msgspec.structs.replace(new.snapshot, clusters=()),
        clusters=changed,
        removed=removed,
    )


def apply(current: Indexed, delta: SnapshotDelta) -> Indexed:
    """The snapshot ``delta`` describes, built on ``current``; checked against its version.

    Its cost grows with the clusters in the delta, plus two copies of the name mappings
    (the snapshot held stays whole until the new one is checked)."""
    if delta.base != current.version:
        raise DeltaMismatch(f"delta from {delta.base} does not apply to {current.version}")
    clusters = dict(current.clusters)
    digests = dict(current.digests)
    added: list[bytes] = []
    dropped: list[bytes] = []
    for name in delta.removed:
        digest = digests.pop(name, None)
        if digest is None:
            raise DeltaMismatch(f"delta removes cluster {name!r}, which {delta.base} lacks")
        del clusters[name]
        dropped.append(digest)
    for cluster in delta.clusters:
        name = cluster.name
        digest = cluster_digest(cluster)
        old = digests.get(name)
        if old is not None:
            dropped.append(old)
        digests[name] = digest
        clusters[name] = cluster  # an existing name keeps its place, a new one goes last
        added.append(digest)
    total = add_digests(current.digest_total, added, dropped)
    version = content_version(delta.head, total)
    if version != delta.version:
        raise DeltaMismatch(f"delta to {delta.version} gives content version {version}")
    snapshot = msgspec.structs.replace(
        delta.head, version=version, clusters=tuple(clusters.values())
    )
    return Indexed(snapshot, digests, clusters, total)


def encode_delta(delta: SnapshotDelta) -> bytes:
    return msgspec.json.encode(delta)


def decode_delta(data: bytes) -> SnapshotDelta:
    return msgspec.json.decode(data, type=SnapshotDelta)
