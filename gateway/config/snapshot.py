"""The compiled configuration snapshot: what a proxy runs.

The config loader (``gateway.config.compile``) and, later, the federation controller both
produce a :class:`Snapshot`. It is plain, immutable data (msgspec Structs) so that it can be
hashed, serialised for ``/config`` and pushed over the wire. The data plane builds its runtime
structures (compiled regexes, load balancers, pools) from it in ``gateway.routing`` and
``gateway.upstream``; nothing in here knows about sockets.

Names follow the Gateway API where one exists. Units are in field names.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import msgspec

PathMatchType = Literal["Exact", "PathPrefix", "RegularExpression"]
StringMatchType = Literal["Exact", "RegularExpression"]
ListenerProtocol = Literal["HTTP", "HTTPS", "TLS"]
UpstreamProtocol = Literal["http1", "h2c"]
LbPolicy = Literal["ROUND_ROBIN", "LEAST_REQUEST"]


class Struct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every snapshot type: frozen, keyword-only, strict on decode."""


# --- upstream clusters -------------------------------------------------------------------


class Endpoint(Struct, frozen=True):
    """One address of a Service port, from an EndpointSlice."""

    address: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    zone: str | None = None
    hostname: str | None = None


class Cluster(Struct, frozen=True):
    """A group of endpoints that requests are balanced over: one Service port.

    ``name`` is ``<namespace>/<service>:<port>``.
    """

    name: str
    protocol: UpstreamProtocol = "http1"
    endpoints: tuple[Endpoint, ...] = ()
    lb_policy: LbPolicy = "ROUND_ROBIN"
    connect_timeout_s: float = 5.0


# --- HTTP routing --------------------------------------------------------------------------


class PathMatch(Struct, frozen=True):
    type: PathMatchType = "PathPrefix"
    value: str = "/"


class HeaderMatch(Struct, frozen=True):
    """``name`` is lower-case."""

    name: str
    value: str
    type: StringMatchType = "Exact"


class QueryMatch(Struct, frozen=True):
    name: str
    value: str
    type: StringMatchType = "Exact"


class RouteMatch(Struct, frozen=True):
    """All conditions must hold (AND). A rule matches when any of its matches holds (OR)."""

    path: PathMatch | None = None
    headers: tuple[HeaderMatch, ...] = ()
    query: tuple[QueryMatch, ...] = ()
    method: str | None = None


class HeaderModifier(Struct, frozen=True):
    """Gateway API HTTPHeaderFilter. Header names in ``remove`` are lower-case."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


class PathModifier(Struct, frozen=True):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    value: str


class RequestHeaderModifierFilter(Struct, frozen=True, tag="RequestHeaderModifier"):
    modifier: HeaderModifier


class ResponseHeaderModifierFilter(Struct, frozen=True, tag="ResponseHeaderModifier"):
    modifier: HeaderModifier


class RequestRedirectFilter(Struct, frozen=True, tag="RequestRedirect"):
    scheme: str | None = None
    hostname: str | None = None
    path: PathModifier | None = None
    port: int | None = None
    status_code: int = 302


class URLRewriteFilter(Struct, frozen=True, tag="URLRewrite"):
    hostname: str | None = None
    path: PathModifier | None = None


class RequestMirrorFilter(Struct, frozen=True, tag="RequestMirror"):
    cluster: str
    percent: float = 100.0


RouteFilter = (
    RequestHeaderModifierFilter
    | ResponseHeaderModifierFilter
    | RequestRedirectFilter
    | URLRewriteFilter
    | RequestMirrorFilter
)


class WeightedBackend(Struct, frozen=True):
    """A ``backendRef``: a cluster name and its weight. ``cluster`` is empty when the
    reference could not be resolved; requests that pick it get 500."""

    cluster: str
    weight: int = 1


class RouteRule(Struct, frozen=True):
    matches: tuple[RouteMatch, ...] = (RouteMatch(path=PathMatch()),)
    filters: tuple[RouteFilter, ...] = ()
    backends: tuple[WeightedBackend, ...] = ()
    request_timeout_s: float | None = None
    backend_request_timeout_s: float | None = None


class HTTPRouteConfig(Struct, frozen=True):
    """An HTTPRoute or a GRPCRoute (GRPC matches are compiled into path matches)."""

    kind: Literal["HTTPRoute", "GRPCRoute"]
    namespace: str
    name: str
    hostnames: tuple[str, ...] = ()
    rules: tuple[RouteRule, ...] = ()
    creation_timestamp: str = ""


# --- TLS passthrough -----------------------------------------------------------------------


class TLSRouteConfig(Struct, frozen=True):
    namespace: str
    name: str
    hostnames: tuple[str, ...] = ()
    backends: tuple[WeightedBackend, ...] = ()


# --- listeners -----------------------------------------------------------------------------


class CertificatePair(Struct, frozen=True):
    """A ``kubernetes.io/tls`` Secret, PEM-encoded. ``hostname`` is the Gateway listener's
    hostname the certificate serves (``None`` for any)."""

    secret: str
    hostname: str | None
    cert_pem: str
    key_pem: str


class Listener(Struct, frozen=True):
    """One Gateway listener. Several listeners may share a port; they then differ by
    hostname (SNI for TLS, Host for HTTP)."""

    gateway: str
    name: str
    port: int
    protocol: ListenerProtocol
    hostname: str | None = None
    certificates: tuple[CertificatePair, ...] = ()
    http_routes: tuple[HTTPRouteConfig, ...] = ()
    tls_routes: tuple[TLSRouteConfig, ...] = ()


class PortBinding(Struct, frozen=True):
    """A socket: the listeners that share one address and port."""

    address: str
    port: int
    protocol: ListenerProtocol
    listeners: tuple[Listener, ...]


# --- process-wide limits -------------------------------------------------------------------


class Limits(Struct, frozen=True):
    """Bounds on what a client may send (DESIGN.md §4). Set with an ``isthmus.dev/v1alpha1``
    ``ProxySettings`` object; these are the defaults."""

    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 300.0
    max_connections_per_listener: int = 10_000
    h2_max_concurrent_streams: int = 100
    h2_initial_window_bytes: int = 1024 * 1024
    h2_max_frame_bytes: int = 16 * 1024
    h2_max_header_list_bytes: int = 64 * 1024
    h2_max_continuation_frames: int = 32
    h2_max_premature_resets: int = 100
    h2_premature_reset_ratio: float = 0.5
    stream_buffer_bytes: int = 256 * 1024
    drain_timeout_s: float = 30.0
    upstream_idle_timeout_s: float = 60.0
    upstream_max_idle_per_endpoint: int = 1024


# --- diagnostics ---------------------------------------------------------------------------


class UnresolvedRef(Struct, frozen=True):
    """A reference the compiler could not follow: a ``backendRef`` to a missing Service or one
    not permitted by a ReferenceGrant, a ``certificateRef`` likewise, or a ``parentRef`` that
    attached to no listener. Such a reference is not a load error (Gateway API reports it in
    status); a backend that is unresolved answers 500. Shown in ``/config``."""

    source: str  # "HTTPRoute default/web"
    field: str  # "spec.rules[0].backendRefs[1]"
    target: str  # "Service other/api:8080"
    reason: str


class Snapshot(Struct, frozen=True):
    """Everything one proxy runs. ``version`` is a content hash of the rest."""

    version: str = ""
    ports: tuple[PortBinding, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    limits: Limits = Limits()
    unresolved: tuple[UnresolvedRef, ...] = ()

    def with_version(self) -> Snapshot:
        """Return a copy whose ``version`` is the hash of its content."""
        body = msgspec.json.encode(msgspec.structs.replace(self, version=""))
        digest = hashlib.sha256(body).hexdigest()[:16]
        return msgspec.structs.replace(self, version=digest)

    def cluster_map(self) -> dict[str, Cluster]:
        return {c.name: c for c in self.clusters}


def encode(snapshot: Snapshot) -> bytes:
    return msgspec.json.encode(snapshot)


def decode(data: bytes) -> Snapshot:
    return msgspec.json.decode(data, type=Snapshot)
