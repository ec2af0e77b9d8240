"""In-process metric aggregates: what the hot path touches.

Each worker owns one :class:`Stats`. Recording a request is a tuple key and a few dict
operations; nothing is formatted here. At scrape time the supervisor asks every worker for
``dump()``, merges the dumps (``merge``) and renders them (``gateway.telemetry.render``).

Keys are tuples of the label values that vary per request; the labels that are fixed for a
proxy (its workload, namespace, cluster) are added at render time.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

import msgspec

# Istio's default buckets for istio_request_duration_milliseconds.
DURATION_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000,
)  # fmt: skip
# Istio's buckets for request and response sizes: 1 B to 1 GB by powers of ten.
SIZE_BUCKETS_BYTES: tuple[float, ...] = (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000,
                                         100000000, 1000000000)  # fmt: skip

# (destination cluster, request_protocol, response_code, grpc_status, response_flags,
#  destination workload)
RequestKey = tuple[str, str, int, str, str, str]


class StatsDump(msgspec.Struct, frozen=True):
    """What a worker reports. Histogram values are [bucket counts..., +Inf count, sum].

    Items are ``(key, value)`` pairs; they are typed loosely because the wire gives them back
    as arrays, and ``merge`` rebuilds the keys itself.
    """

    requests: list[Any]
    duration: list[Any]
    request_bytes: list[Any]
    response_bytes: list[Any]
    tcp: list[Any]
    rejections: list[Any]
    gauges: dict[str, float]
    clusters: dict[str, list[float]] = {}


# Per-cluster state, in this order in ``Stats.clusters`` values. The first ones add up across
# workers; the ``_MAX`` ones describe endpoints every worker sees, so the largest is kept.
CLUSTER_FIELDS = (
    "connections", "pending", "requests", "retries_active", "retries", "overflows",
    "ejections", "ejected", "healthy", "endpoints",
)  # fmt: skip
_CLUSTER_MAX = frozenset(("ejected", "healthy", "endpoints"))


class Stats:
    __slots__ = ("clusters", "duration", "gauges", "rejections", "request_bytes", "requests",
                 "response_bytes", "tcp")  # fmt: skip

    def __init__(self) -> None:
        self.requests: dict[RequestKey, int] = {}
        self.duration: dict[RequestKey, list[float]] = {}
        self.request_bytes: dict[RequestKey, list[float]] = {}
        self.response_bytes: dict[RequestKey, list[float]] = {}
        # (listener port, counter name) -> value: opened, closed, rx bytes, tx bytes
        self.tcp: dict[tuple[int, str], int] = {}
        self.rejections: dict[str, int] = {}
        self.gauges: dict[str, float] = {}
        # Filled in just before a dump (the engine reads its clusters), never per request.
        self.clusters: dict[str, list[float]] = {}

    def record_request(
        self,
        key: RequestKey,
        duration_ms: float,
        request_bytes: int,
        response_bytes: int,
    ) -> None:
        requests = self.requests
        n = requests.get(key)
        if n is None:
            requests[key] = 1
            self.duration[key] = [0.0] * (len(DURATION_BUCKETS_MS) + 2)
            self.request_bytes[key] = [0.0] * (len(SIZE_BUCKETS_BYTES) + 2)
            self.response_bytes[key] = [0.0] * (len(SIZE_BUCKETS_BYTES) + 2)
        else:
            requests[key] = n + 1
        h = self.duration[key]
        h[bisect_left(DURATION_BUCKETS_MS, duration_ms)] += 1
        h[-1] += duration_ms
        h = self.request_bytes[key]
        h[bisect_left(SIZE_BUCKETS_BYTES, request_bytes)] += 1
        h[-1] += request_bytes
        h = self.response_bytes[key]
        h[bisect_left(SIZE_BUCKETS_BYTES, response_bytes)] += 1
        h[-1] += response_bytes

    # ConnectionEvents, for gateway.transport.connection
    def connection_opened(self, port: int) -> None:
        k = (port, "opened")
        self.tcp[k] = self.tcp.get(k, 0) + 1

    def connection_closed(self, port: int, rx: int, tx: int) -> None:
        tcp = self.tcp
        for name, v in (("closed", 1), ("received", rx), ("sent", tx)):
            k = (port, name)
            tcp[k] = tcp.get(k, 0) + v

    def connection_rejected(self, port: int, reason: str) -> None:
        self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def dump(self) -> StatsDump:
        return StatsDump(
            requests=list(self.requests.items()),
            duration=list(self.duration.items()),
            request_bytes=list(self.request_bytes.items()),
            response_bytes=list(self.response_bytes.items()),
            tcp=list(self.tcp.items()),
            rejections=list(self.rejections.items()),
            gauges=dict(self.gauges),
            clusters=dict(self.clusters),
        )


def merge(dumps: list[StatsDump]) -> Stats:
    """Add the workers' dumps up into one :class:`Stats` (for rendering only)."""
    total = Stats()
    for d in dumps:
        for item in d.requests:
            k = _key(item[0])
            total.requests[k] = total.requests.get(k, 0) + int(item[1])
        for src, dst in (
            (d.duration, total.duration),
            (d.request_bytes, total.request_bytes),
            (d.response_bytes, total.response_bytes),
        ):
            for item in src:
                k = _key(item[0])
                values = [float(v) for v in item[1]]
                cur = dst.get(k)
                if cur is None:
                    dst[k] = values
                else:
                    for i, v in enumerate(values):
                        cur[i] += v
        for item in d.tcp:
            port, name = item[0]
            tk = (int(port), str(name))
            total.tcp[tk] = total.tcp.get(tk, 0) + int(item[1])
        for item in d.rejections:
            reason = str(item[0])
            total.rejections[reason] = total.rejections.get(reason, 0) + int(item[1])
        for name, v in d.gauges.items():
            # Gauges describe the process's state (listeners, config): every worker has the
            # same, so the largest is reported rather than the sum.
            total.gauges[name] = max(total.gauges.get(name, v), v)
        for cname, values in d.clusters.items():
            cur = total.clusters.get(cname)
            if cur is None:
                total.clusters[cname] = [float(v) for v in values]
                continue
            for i, field in enumerate(CLUSTER_FIELDS):
                v = float(values[i])
                cur[i] = max(cur[i], v) if field in _CLUSTER_MAX else cur[i] + v
    return total


def _key(raw: Any) -> RequestKey:
    c, proto, code, grpc, flags, workload = raw
    return (str(c), str(proto), int(code), str(grpc), str(flags), str(workload))
