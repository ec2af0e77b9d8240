"""The import index (``federation.snapshots.clustersets.ImportIndex``): kept up to date from
one imports mapping to the next, it must always equal grouping and building the whole
mapping from scratch, while rebuilding only the services whose entries changed."""

from __future__ import annotations

import random
from collections.abc import Iterable

from federation.model import ImportedService
from federation.snapshots.clustersets import (
    ImportIndex,
    ImportKey,
    ServiceKey,
    by_name,
    clusterset_cluster,
    ports_of,
)
from tests.federation.snapshots.fed_snap_helpers import imported, keyed

CLUSTERS = ("east", "west", "north", "south")


def group(
    imports: Iterable[ImportedService], cluster: str
) -> dict[ServiceKey, list[ImportedService]]:
    """Imports by (namespace, name), each list sorted by exporting cluster; our own
    cluster's entries are left out (the index's result, computed from scratch)."""
    grouped: dict[ServiceKey, dict[str, ImportedService]] = {}
    for imp in imports:
        if imp.cluster != cluster:
            grouped.setdefault((imp.namespace, imp.name), {})[imp.cluster] = imp
    return {key: [by[c] for c in sorted(by)] for key, by in grouped.items()}


def from_scratch(
    imports: dict[ImportKey, ImportedService], cluster: str
) -> tuple[dict[tuple[str, str], list[ImportedService]], list[str]]:
    groups = group(imports.values(), cluster)
    clusters = [
        clusterset_cluster(ns, name, port, exporters, "cluster.local")
        for (ns, name), exporters in groups.items()
        for port in ports_of(exporters)
    ]
    return groups, [c.name for c in sorted(clusters, key=by_name)]


def random_import(rng: random.Random, cluster: str, name: str) -> ImportedService:
    ports = rng.sample([80, 443, 8080, 9090], rng.randint(1, 2))
    return imported(cluster, name, *ports, namespace=f"ns{rng.randrange(2)}",
                    ready=rng.randrange(3), healthy=rng.random() > 0.2)  # fmt: skip


def test_the_index_follows_random_changes_exactly() -> None:
    rng = random.Random(11)
    index = ImportIndex("east", "cluster.local")
    live: dict[ImportKey, ImportedService] = {}
    for step in range(60):
        live = dict(live)  # a new mapping each time, as the controller hands them over
        for _ in range(rng.randint(1, 6)):
            cluster, name = rng.choice(CLUSTERS), f"svc{rng.randrange(12)}"
            matching = [k for k in live if k[0] == cluster and k[2] == name]
            if matching and rng.random() < 0.4:
                del live[matching[0]]
            else:
                for key in matching:
                    del live[key]
                imp = random_import(rng, cluster, name)
                live[(imp.cluster, imp.namespace, imp.name)] = imp
        index.update(live)
        groups, names = from_scratch(live, "east")
        assert index.groups == groups, f"step {step}"
        assert [c.name for c in index.clusters] == names
        expected = {
            c.name: c
            for (ns, name), exporters in groups.items()
            for c in [clusterset_cluster(ns, name, p, exporters, "cluster.local")
                      for p in ports_of(exporters)]
        }  # fmt: skip
        assert {c.name: c for c in index.clusters} == expected


def test_an_unchanged_service_keeps_its_group_and_clusters() -> None:
    a = imported("west", "a", 80)
    b = imported("west", "b", 80)
    index = ImportIndex("east", "cluster.local")
    index.update(keyed(a, b, imported("east", "own", 80)))
    assert set(index.groups) == {("default", "a"), ("default", "b")}  # own exports left out
    group_a, clusters = index.groups[("default", "a")], index.clusters
    index.update(keyed(a, imported("west", "b", 80, ready=0), imported("east", "own", 80)))
    assert index.groups[("default", "a")] is group_a
    cluster_a = next(c for c in clusters if c.name == "default/a.clusterset:80")
    assert next(c for c in index.clusters if c.name == cluster_a.name) is cluster_a
    b_now = next(c for c in index.clusters if c.name == "default/b.clusterset:80")
    assert not b_now.endpoints[0].ready
    index.update({})
    assert index.groups == {} and index.clusters == ()
