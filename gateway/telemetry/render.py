"""Render merged stats as Prometheus text, under Istio's standard metric and label names.

Runs at scrape time in the supervisor, never on the request path. Istio's dashboards select
on ``reporter``, the ``source_*``/``destination_*`` labels, ``request_protocol``,
``response_code``, ``grpc_response_status``, ``response_flags`` and
``connection_security_policy``; all of them are present. Labels the proxy cannot know yet
(peer principals before mTLS) are ``unknown``, as Istio writes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

from gateway.config.snapshot import Node
from gateway.telemetry.stats import (
    CLUSTER_FIELDS,
    DURATION_BUCKETS_MS,
    SIZE_BUCKETS_BYTES,
    RequestKey,
    Stats,
)

_REQUEST_LABELS = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
)


@dataclass(frozen=True, slots=True)
class ProxyIdentity:
    """The labels that are fixed for one proxy."""

    workload: str = "isthmus-ingress"
    namespace: str = "default"
    cluster: str = "Kubernetes"
    reporter: str = "source"
    domain: str = "cluster.local"


def identity_of(node: Node, base: ProxyIdentity) -> ProxyIdentity:
    """The labels of a proxy whose snapshot names its node: the snapshot's node wins over
    the command line's defaults where it differs from the defaults."""
    default = Node()
    return ProxyIdentity(
        workload=node.workload if node.workload != default.workload else base.workload,
        namespace=node.namespace if node.namespace != default.namespace else base.namespace,
        cluster=node.cluster if node.cluster != default.cluster else base.cluster,
        reporter=base.reporter,
        domain=node.trust_domain,
    )


def _destination(cluster: str, domain: str) -> tuple[str, str, str]:
    """``ns/svc:port`` → (FQDN, name, namespace)."""
    if not cluster:
        return "unknown", "unknown", "unknown"
    ns, _, rest = cluster.partition("/")
    name = rest.rsplit(":", 1)[0] if rest else ns
    if not rest:
        return cluster, cluster, "unknown"
    return f"{name}.{ns}.svc.{domain}", name, ns


class _Collector:
    def __init__(self, stats: Stats, ident: ProxyIdentity, version: str, workers: int) -> None:
        self.stats = stats
        self.ident = ident
        self.version = version
        self.workers = workers

    def _labels(self, key: RequestKey) -> list[str]:
        cluster, proto, code, grpc, flags, workload = key
        ident = self.ident
        fqdn, name, ns = _destination(cluster, ident.domain)
        return [
            ident.reporter,
            ident.workload,
            ident.namespace,
            "unknown",
            ident.workload,
            "unknown",
            ident.cluster,
            workload or (name if cluster else "unknown"),
            ns,
            "unknown",
            name if cluster else "unknown",
            "unknown",
            fqdn,
            name,
            ns,
            ident.cluster if cluster else "unknown",
            proto,
            str(code),
            grpc,
            flags or "-",
            "unknown",
        ]

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        total = CounterMetricFamily(
            "istio_requests_total", "Requests handled by the proxy.", labels=_REQUEST_LABELS
        )
        for key, n in sorted(s.requests.items()):
            total.add_metric(self._labels(key), n)
        yield total
        for name, doc, table, buckets in (
            ("istio_request_duration_milliseconds", "Request duration.", s.duration,
             DURATION_BUCKETS_MS),
            ("istio_request_bytes", "Request body sizes.", s.request_bytes, SIZE_BUCKETS_BYTES),
            ("istio_response_bytes", "Response body sizes.", s.response_bytes,
             SIZE_BUCKETS_BYTES),
        ):  # fmt: skip
            fam = HistogramMetricFamily(name, doc, labels=_REQUEST_LABELS)
            for key, values in sorted(table.items()):
                cumulative = []
                acc = 0.0
                for le, count in zip(buckets, values, strict=False):
                    acc += count
                    cumulative.append((_fmt(le), acc))
                acc += values[len(buckets)]
                cumulative.append(("+Inf", acc))
                fam.add_metric(self._labels(key), cumulative, sum_value=values[-1])
            yield fam
        tcp_names = {
            "opened": ("istio_tcp_connections_opened_total", "Downstream connections opened."),
            "closed": ("istio_tcp_connections_closed_total", "Downstream connections closed."),
            "received": ("istio_tcp_received_bytes_total", "Bytes received from downstream."),
            "sent": ("istio_tcp_sent_bytes_total", "Bytes sent to downstream."),
        }
        tcp_labels = ("reporter", "source_workload", "source_workload_namespace",
                      "destination_service", "listener_port")  # fmt: skip
        fams = {k: CounterMetricFamily(n, d, labels=tcp_labels) for k, (n, d) in tcp_names.items()}
        for (port, name), n in sorted(s.tcp.items()):
            if name in fams:
                fams[name].add_metric(
                    [self.ident.reporter, self.ident.workload, self.ident.namespace, "unknown",
                     str(port)],
                    n,
                )  # fmt: skip
        yield from fams.values()
        rej = CounterMetricFamily(
            "isthmus_downstream_rejections_total",
            "Connections or requests refused for bad input or limits.",
            labels=("reason",),
        )
        for reason, n in sorted(s.rejections.items()):
            rej.add_metric([reason], n)
        yield rej
        yield from self._clusters()
        limited = CounterMetricFamily(
            "isthmus_ratelimited_requests_total",
            "Requests answered 429 by a RateLimit filter (response flag RL).",
            labels=("destination_service",),
        )
        by_service: dict[str, int] = {}
        for key, n in s.requests.items():
            if key[4] == "RL":
                svc = _destination(key[0], self.ident.domain)[0]
                by_service[svc] = by_service.get(svc, 0) + n
        for svc, n in sorted(by_service.items()):
            limited.add_metric([svc], n)
        yield limited
        info = GaugeMetricFamily(
            "isthmus_config_info", "The active configuration version.", labels=("version",)
        )
        info.add_metric([self.version], 1)
        yield info
        workers = GaugeMetricFamily("isthmus_workers", "Worker processes answering.")
        workers.add_metric([], self.workers)
        yield workers
        for gname, value in sorted(s.gauges.items()):
            g = GaugeMetricFamily(gname, gname.replace("_", " "))
            g.add_metric([], value)
            yield g

    def _clusters(self) -> Iterator[Metric]:
        """The proxy's own upstream state, per cluster (``CLUSTER_FIELDS``)."""
        specs = (
            ("connections", "isthmus_upstream_connections", "Open upstream connections.", False),
            ("pending", "isthmus_upstream_pending_requests",
             "Requests waiting for an upstream connection (the pool queue).", False),
            ("requests", "isthmus_upstream_active_requests", "Requests in flight upstream.",
             False),
            ("retries_active", "isthmus_upstream_active_retries", "Retries in flight.", False),
            ("retries", "isthmus_upstream_retries", "Retries started.", True),
            ("overflows", "isthmus_upstream_overflows",
             "Requests refused by the circuit breakers (response flag UO).", True),
            ("ejections", "isthmus_outlier_ejections", "Endpoints ejected by outlier detection.",
             True),
            ("ejected", "isthmus_outlier_ejected_endpoints", "Endpoints ejected now.", False),
            ("healthy", "isthmus_upstream_healthy_endpoints",
             "Endpoints taking traffic (healthy, not ejected).", False),
            ("endpoints", "isthmus_upstream_endpoints", "Endpoints known.", False),
        )  # fmt: skip
        clusters = sorted(self.stats.clusters.items())
        for field, name, doc, counter in specs:
            i = CLUSTER_FIELDS.index(field)
            fam: CounterMetricFamily | GaugeMetricFamily
            if counter:
                fam = CounterMetricFamily(name, doc, labels=("cluster_name",))
            else:
                fam = GaugeMetricFamily(name, doc, labels=("cluster_name",))
            for cname, values in clusters:
                fam.add_metric([cname], values[i])
            yield fam


def _fmt(le: float) -> str:
    return str(int(le)) if float(le).is_integer() else str(le)


def render(stats: Stats, ident: ProxyIdentity, version: str, workers: int) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(stats, ident, version, workers))
    out: bytes = generate_latest(registry)
    return out
