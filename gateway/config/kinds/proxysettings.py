"""``isthmus.dev/v1alpha1 ProxySettings``: the proxy's limits, identity and telemetry.

At most one ProxySettings object may be loaded (its namespace and name are free). The loader
validates it; ``gateway.config.compile`` maps its limit fields onto the snapshot's ``Limits``
(``*Seconds`` fields become ``*_s``), ``node`` onto ``Node`` and ``telemetry`` onto
``Telemetry``. Every field is optional; an unset field keeps the default of
``gateway.config.snapshot``.

=================================  =========================================================
spec field                         meaning (unit in the name)
=================================  =========================================================
``maxHeaderBytes``                 request header block, HTTP/1.1 and after HPACK (>= 1024)
``headerTimeoutSeconds``           time for a request's headers to arrive (> 0)
``idleTimeoutSeconds``             idle downstream connections are closed after this (> 0)
``maxConnectionsPerListener``      accepting pauses above this many connections (>= 1)
``h2MaxConcurrentStreams``         SETTINGS_MAX_CONCURRENT_STREAMS we advertise (>= 1)
``h2InitialWindowBytes``           initial flow-control window we advertise (1 to 2^31-1)
``h2MaxFrameBytes``                SETTINGS_MAX_FRAME_SIZE (16384 to 16777215)
``h2MaxHeaderListBytes``           SETTINGS_MAX_HEADER_LIST_SIZE (>= 1024)
``h2MaxContinuationFrames``        CONTINUATION frames allowed per header block (>= 1)
``h2MaxPrematureResets``           premature stream resets before GOAWAY (>= 1)
``h2PrematureResetRatio``          ... and their share of all streams (0 < r <= 1)
``streamBufferBytes``              per-stream body buffer, the backpressure mark (>= 1024)
``drainTimeoutSeconds``            how long in-flight requests get on SIGTERM (>= 0)
``upstreamIdleTimeoutSeconds``     idle pooled upstream connections are closed (> 0)
``upstreamMaxIdlePerEndpoint``     idle pooled connections kept per endpoint (>= 0)
``retryBudgetPercent``             retries in flight, as a share of requests (0 to 100)
``retryBudgetMinConcurrency``      retries always allowed in flight per cluster (>= 0)
``retryBufferBytes``               request body kept for a retry (>= 0)
``node``                           ``cluster``, ``workload``, ``namespace``,
                                   ``trustDomain``, ``locality`` (``region/zone/subzone``),
                                   ``labels``
``telemetry.tracing``              ``randomSamplingPercentage``, ``otlp.endpoint``,
                                   ``zipkin.endpoint``, ``serviceName``
``telemetry.accessLog``            ``path`` (``-`` for stdout), ``samplingPercentage``
=================================  =========================================================
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from gateway.config.kinds.meta import ISTHMUS_GROUP, Object
from gateway.config.schema import Model, expect
from gateway.config.snapshot import AccessLog, Limits, Node, Telemetry, Tracing

Count = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
Url = Annotated[str, expect("an http(s) URL", pattern=r"^https?://[^\s/]+(/\S*)?$")]
Locality = Annotated[
    str, expect("a locality region[/zone[/subzone]]", pattern=r"^[^/\s]+(/[^/\s]*){0,2}$")
]


class NodeSpec(Model, frozen=True, kw_only=True):
    cluster: str | None = None
    workload: str | None = None
    namespace: str | None = None
    trust_domain: str | None = None
    locality: Locality | None = None
    labels: dict[str, str] = {}

    def node(self) -> Node:
        region, zone, subzone = [*(self.locality or "").split("/"), "", ""][:3]
        base = Node()
        return Node(
            cluster=self.cluster or base.cluster,
            workload=self.workload or base.workload,
            namespace=self.namespace or base.namespace,
            trust_domain=self.trust_domain or base.trust_domain,
            region=region or None,
            zone=zone or None,
            subzone=subzone or None,
            labels=tuple(sorted(self.labels.items())),
        )


class Endpoint(Model, frozen=True, kw_only=True):
    endpoint: Url


class TracingSpec(Model, frozen=True, kw_only=True):
    random_sampling_percentage: Percent = 1.0
    otlp: Endpoint | None = None
    zipkin: Endpoint | None = None
    service_name: str | None = None


class AccessLogSpec(Model, frozen=True, kw_only=True):
    path: str = "-"
    sampling_percentage: Percent = 100.0


class TelemetrySpec(Model, frozen=True, kw_only=True):
    tracing: TracingSpec | None = None
    access_log: AccessLogSpec | None = None

    def telemetry(self) -> Telemetry:
        tracing = access_log = None
        if (t := self.tracing) is not None:
            tracing = Tracing(
                sampling_percent=t.random_sampling_percentage,
                otlp_endpoint=t.otlp.endpoint if t.otlp else None,
                zipkin_endpoint=t.zipkin.endpoint if t.zipkin else None,
                service_name=t.service_name,
            )
        if (a := self.access_log) is not None:
            access_log = AccessLog(path=a.path, sampling_percent=a.sampling_percentage)
        return Telemetry(tracing=tracing, access_log=access_log)


class ProxySettingsSpec(Model, frozen=True, kw_only=True):
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024)] | None = None
    header_timeout_seconds: Seconds | None = None
    idle_timeout_seconds: Seconds | None = None
    max_connections_per_listener: Count | None = None
    h2_max_concurrent_streams: Count | None = None
    h2_initial_window_bytes: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] | None = None
    h2_max_frame_bytes: Annotated[int, msgspec.Meta(ge=16384, le=16777215)] | None = None
    h2_max_header_list_bytes: Annotated[int, msgspec.Meta(ge=1024)] | None = None
    h2_max_continuation_frames: Count | None = None
    h2_max_premature_resets: Count | None = None
    h2_premature_reset_ratio: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    stream_buffer_bytes: Annotated[int, msgspec.Meta(ge=1024)] | None = None
    drain_timeout_seconds: Annotated[float, msgspec.Meta(ge=0)] | None = None
    upstream_idle_timeout_seconds: Seconds | None = None
    upstream_max_idle_per_endpoint: Annotated[int, msgspec.Meta(ge=0)] | None = None
    retry_budget_percent: Percent | None = None
    retry_budget_min_concurrency: Annotated[int, msgspec.Meta(ge=0)] | None = None
    retry_buffer_bytes: Annotated[int, msgspec.Meta(ge=0)] | None = None
    node: NodeSpec | None = None
    telemetry: TelemetrySpec | None = None


# Spec fields that are not limits.
_NOT_LIMITS = ("node", "telemetry")


class ProxySettings(Object, frozen=True, kw_only=True):
    kind_name = "ProxySettings"
    api_versions = (f"{ISTHMUS_GROUP}/v1alpha1",)

    spec: ProxySettingsSpec = ProxySettingsSpec()

    def limits(self) -> Limits:
        """The snapshot limits: defaults, overridden by every field that is set."""
        changes: dict[str, Any] = {}
        for field in msgspec.structs.fields(self.spec):
            if field.name in _NOT_LIMITS:
                continue
            value = getattr(self.spec, field.name)
            if value is not None:
                changes[limits_field(field.name)] = value
        return msgspec.structs.replace(Limits(), **changes)

    def node(self) -> Node:
        return self.spec.node.node() if self.spec.node is not None else Node()

    def telemetry(self) -> Telemetry:
        t = self.spec.telemetry
        return t.telemetry() if t is not None else Telemetry()


def limits_field(spec_field: str) -> str:
    """The ``Limits`` attribute for a spec attribute: ``*_seconds`` becomes ``*_s``."""
    if spec_field.endswith("_seconds"):
        return spec_field.removesuffix("_seconds") + "_s"
    return spec_field
