"""The controller's ``/metrics``: rendered at scrape time from the parts' own counters.

Names are ``isthmus_federation_*``. The Consul sync counters come from
``ConsulSync.metrics()`` (writes by kind, errors, sync lag, leadership, exported and imported
counts); the snapshot hub adds pushes and push latency; the store adds its size and whether
the sources have synced. Called by ``federation.controller``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

if TYPE_CHECKING:
    from federation.controller import Controller

_BAD = re.compile(r"[^a-zA-Z0-9_]")


class _Collector:
    def __init__(self, controller: Controller) -> None:
        self.c = controller

    def collect(self) -> Iterator[Metric]:
        c = self.c
        cluster = c.config.cluster
        for name, value in sorted(c.sync.metrics().items()):
            g = GaugeMetricFamily(
                "isthmus_federation_" + _BAD.sub("_", name), f"Consul sync: {name}.",
                labels=("cluster",),
            )  # fmt: skip
            g.add_metric([cluster], float(value))
            yield g
        imported = GaugeMetricFamily("isthmus_federation_imported_services",
                                     "Services imported from other clusters.",
                                     labels=("cluster",))  # fmt: skip
        imported.add_metric([cluster], float(len(c.sync.imports)))
        yield imported
        stats = c.hub.stats
        pushes = CounterMetricFamily("isthmus_federation_pushes", "Snapshots pushed to proxies.",
                                     labels=("cluster",))  # fmt: skip
        pushes.add_metric([cluster], float(stats.pushes))
        yield pushes
        latency = GaugeMetricFamily(
            "isthmus_federation_push_latency_seconds_max",
            "Longest time from a change to a proxy receiving its snapshot.",
            labels=("cluster",),
        )
        latency.add_metric([cluster], stats.push_latency_max_s)
        yield latency
        total = CounterMetricFamily(
            "isthmus_federation_push_latency_seconds",
            "Sum of the times from a change to a proxy receiving its snapshot.",
            labels=("cluster",),
        )
        total.add_metric([cluster], stats.push_latency_sum_s)
        yield total
        recompiles = CounterMetricFamily("isthmus_federation_recompiles",
                                         "Snapshot generations compiled.",
                                         labels=("cluster",))  # fmt: skip
        recompiles.add_metric([cluster], float(stats.recompiles))
        yield recompiles
        deltas = CounterMetricFamily("isthmus_federation_snapshot_deltas",
                                     "Snapshot deltas encoded (each one serves every proxy "
                                     "moving between the same two versions).",
                                     labels=("cluster",))  # fmt: skip
        deltas.add_metric([cluster], float(stats.deltas))
        yield deltas
        objects = GaugeMetricFamily("isthmus_federation_store_objects",
                                    "Objects read from the cluster's sources.",
                                    labels=("cluster",))  # fmt: skip
        objects.add_metric([cluster], float(len(c.store)))
        yield objects
        synced = GaugeMetricFamily("isthmus_federation_sources_synced",
                                   "1 once every source finished its first list.",
                                   labels=("cluster",))  # fmt: skip
        synced.add_metric([cluster], 1.0 if c.store.synced.is_set() else 0.0)
        yield synced


def render_metrics(controller: Controller) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(controller))
    out: bytes = generate_latest(registry)
    return out
