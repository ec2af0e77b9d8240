"""``isthmus.dev/v1alpha1 ProxySettings``: the proxy's limits on bad input (DESIGN.md §4).

At most one ProxySettings object may be loaded (its namespace and name are free). The loader
validates it; ``gateway.config.compile`` maps it onto the snapshot's ``Limits``
(``*Seconds`` fields become ``*_s``). Every field is optional; an unset field keeps the
default of ``gateway.config.snapshot.Limits``.

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
=================================  =========================================================
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from gateway.config.kinds.meta import ISTHMUS_GROUP, Object
from gateway.config.schema import Model
from gateway.config.snapshot import Limits

Count = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]


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


class ProxySettings(Object, frozen=True, kw_only=True):
    kind_name = "ProxySettings"
    api_versions = (f"{ISTHMUS_GROUP}/v1alpha1",)

    spec: ProxySettingsSpec = ProxySettingsSpec()

    def limits(self) -> Limits:
        """The snapshot limits: defaults, overridden by every field that is set."""
        changes: dict[str, Any] = {}
        for field in msgspec.structs.fields(self.spec):
            value = getattr(self.spec, field.name)
            if value is not None:
                changes[limits_field(field.name)] = value
        return msgspec.structs.replace(Limits(), **changes)


def limits_field(spec_field: str) -> str:
    """The ``Limits`` attribute for a spec attribute: ``*_seconds`` becomes ``*_s``."""
    if spec_field.endswith("_seconds"):
        return spec_field.removesuffix("_seconds") + "_s"
    return spec_field
