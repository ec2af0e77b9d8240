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
from collections.abc import Iterable, Mapping
from typing import Literal

import msgspec

PathMatchType = Literal["Exact", "PathPrefix", "RegularExpression"]
StringMatchType = Literal["Exact", "RegularExpression"]
ListenerProtocol = Literal["HTTP", "HTTPS", "TLS"]
# Downstream mTLS of a port (Istio PeerAuthentication); DISABLE compiles to None.
MtlsMode = Literal["STRICT", "PERMISSIVE"]
UpstreamProtocol = Literal["http1", "h2c"]
LbPolicy = Literal["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"]
UNLIMITED = 2**32 - 1  # Istio's "no limit" for connection pool counts


class Struct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """Base of every snapshot type: frozen, keyword-only, strict on decode. Not tracked by
    the cycle collector (``gc=False``): a snapshot is a tree and can hold no cycle, and a
    controller keeps hundreds of thousands of these objects, which every full collection
    would otherwise walk."""


# --- upstream clusters -------------------------------------------------------------------


class Endpoint(Struct, frozen=True):
    """One address of a Service port, from an EndpointSlice.

    The locality is ``region``/``zone``/``subzone``: ``zone`` is the EndpointSlice endpoint's
    ``zone``; region and subzone come from the labels ``topology.kubernetes.io/region`` and
    ``topology.istio.io/subzone`` of the Node or Pod behind it (or, locally, of the
    EndpointSlice). ``labels`` are the labels ``failoverPriority`` compares.
    ``workload`` and ``service_account`` name what runs behind the address, for the
    ``destination_*`` metric labels and (later) the expected peer identity.
    ``tls``, when set, replaces the cluster's ``tls`` for this endpoint: the federation
    controller appends another cluster's east-west gateway to a local Service's cluster (as a
    lower-priority failover locality) and that endpoint alone needs mTLS with the service SNI.
    """

    address: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    zone: str | None = None
    hostname: str | None = None
    region: str | None = None
    subzone: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    workload: str | None = None
    service_account: str | None = None
    tls: UpstreamTls | None = None


class ConnectionPool(Struct, frozen=True):
    """DestinationRule ``trafficPolicy.connectionPool``; the defaults are Istio's (no limits).

    Like Envoy's circuit breakers, the limits hold per cluster; each worker process enforces
    them on its own share of the traffic.
    """

    max_connections: int = UNLIMITED  # tcp.maxConnections
    connect_timeout_s: float = 10.0  # tcp.connectTimeout
    http1_max_pending_requests: int = UNLIMITED  # waiting for a connection
    http2_max_requests: int = UNLIMITED  # requests in flight to the cluster
    max_requests_per_connection: int = 0  # 0: unlimited
    max_retries: int = UNLIMITED  # retries in flight to the cluster
    idle_timeout_s: float | None = None  # None: the proxy's upstreamIdleTimeoutSeconds


class OutlierDetection(Struct, frozen=True):
    """DestinationRule ``trafficPolicy.outlierDetection``. Present only when a rule sets it
    (as in Istio: no DestinationRule, no ejection). 0 disables a consecutive-error trigger."""

    consecutive_5xx_errors: int = 5
    consecutive_gateway_errors: int = 0
    interval_s: float = 10.0
    base_ejection_time_s: float = 30.0
    max_ejection_percent: int = 10
    min_health_percent: int = 0


class HashCookie(Struct, frozen=True):
    name: str
    path: str | None = None
    ttl_s: float | None = None  # set: the proxy makes the cookie when the request has none


class ConsistentHash(Struct, frozen=True):
    """``loadBalancer.consistentHash``: exactly one key source is set. A ring hash."""

    header: str | None = None  # lower-case
    cookie: HashCookie | None = None
    use_source_ip: bool = False
    minimum_ring_size: int = 1024


class LocalityShare(Struct, frozen=True):
    """``distribute`` entry: traffic from ``from_`` goes to the localities of ``to`` by
    weight (percent). Locality patterns are ``region/zone/subzone`` with ``*`` allowed."""

    from_: str = msgspec.field(name="from")
    to: tuple[tuple[str, int], ...]


class LocalityFailover(Struct, frozen=True):
    from_: str = msgspec.field(name="from")
    to: str


class LocalityLb(Struct, frozen=True):
    """``loadBalancer.localityLbSetting``. Locality-aware routing is on when this is set and
    ``enabled``; as in Istio it acts on failover only together with outlier detection or
    active health checks that can find endpoints unhealthy."""

    enabled: bool = True
    distribute: tuple[LocalityShare, ...] = ()
    failover: tuple[LocalityFailover, ...] = ()
    failover_priority: tuple[str, ...] = ()


class HealthCheck(Struct, frozen=True):
    """Active HTTP health checking, from the Service annotations ``health.isthmus.dev/*``."""

    path: str = "/healthz"
    interval_s: float = 5.0
    timeout_s: float = 1.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3
    port: int | None = None  # None: the endpoint's own port
    expected_statuses: tuple[int, ...] = ()  # empty: any 2xx


class UpstreamTls(Struct, frozen=True):
    """TLS origination towards a cluster's endpoints (DestinationRule ``tls``, or what the
    control plane sets for mesh traffic).

    ``ISTIO_MUTUAL``: present the proxy's own SVID and verify the peer against the proxy's
    trust bundle and ``subject_alt_names`` (the SPIFFE IDs the destination may have).
    ``SIMPLE``: server-authenticated TLS with ``ca_pem`` (or the system roots).
    ``MUTUAL``: like SIMPLE plus a client certificate from ``client_cert_pem``/``client_key_pem``.
    ``sni`` is sent in the ClientHello; cross-cluster clusters use Istio's
    ``outbound_.<port>_._.<host>`` form so that the remote east-west gateway can route on it.
    """

    mode: Literal["ISTIO_MUTUAL", "SIMPLE", "MUTUAL"] = "ISTIO_MUTUAL"
    sni: str | None = None
    subject_alt_names: tuple[str, ...] = ()
    ca_pem: str | None = None
    client_cert_pem: str | None = None
    client_key_pem: str | None = None
    alpn: tuple[str, ...] = ("h2", "http/1.1")


class Cluster(Struct, frozen=True):
    """A group of endpoints that requests are balanced over: one Service port.

    ``name`` is ``<namespace>/<service>:<port>``. The traffic policy comes from the Service's
    annotations and a DestinationRule whose ``host`` is the Service.
    """

    name: str
    protocol: UpstreamProtocol = "http1"
    endpoints: tuple[Endpoint, ...] = ()
    lb_policy: LbPolicy = "ROUND_ROBIN"
    pool: ConnectionPool = ConnectionPool()
    outlier: OutlierDetection | None = None
    consistent_hash: ConsistentHash | None = None
    locality_lb: LocalityLb | None = None
    health_check: HealthCheck | None = None
    tls: UpstreamTls | None = None
    # Set for clusters imported from another cluster of the mesh (the federation
    # controller): that cluster's name, for the destination_cluster metric label.
    origin_cluster: str | None = None


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


RateLimitKey = Literal["Route", "Header", "ClientIP", "PeerIdentity"]


class RateLimitFilter(Struct, frozen=True, tag="RateLimit"):
    """``isthmus.dev`` RateLimit (ExtensionRef): a token bucket of ``max_tokens`` that gains
    ``tokens_per_fill`` every ``fill_interval_s``, one per ``key``. ``name`` is the RateLimit
    object; ``scope`` names the route rule that references it, so that each rule has its own
    buckets. ``header`` (lower-case) is the key header for ``key == "Header"``."""

    name: str
    scope: str
    max_tokens: int
    tokens_per_fill: int = 1
    fill_interval_s: float = 1.0
    key: RateLimitKey = "Route"
    header: str | None = None
    response_headers: bool = True


class FaultFilter(Struct, frozen=True, tag="Fault"):
    """``isthmus.dev`` Fault (ExtensionRef), Istio's HTTPFaultInjection: delay ``delay_s``
    before forwarding for ``delay_percent`` of requests, answer ``abort_http_status`` or the
    gRPC code ``abort_grpc_status`` for ``abort_percent`` of them."""

    name: str
    delay_s: float = 0.0
    delay_percent: float = 0.0
    abort_http_status: int | None = None
    abort_grpc_status: int | None = None
    abort_percent: float = 0.0


class UnresolvedFilter(Struct, frozen=True, tag="Unresolved"):
    """An ExtensionRef filter whose object is missing. The Gateway API says such a filter is
    not skipped: the requests it would have processed get an error (500)."""

    target: str  # "RateLimit default/api"


RouteFilter = (
    RequestHeaderModifierFilter
    | ResponseHeaderModifierFilter
    | RequestRedirectFilter
    | URLRewriteFilter
    | RequestMirrorFilter
    | RateLimitFilter
    | FaultFilter
    | UnresolvedFilter
)


class WeightedBackend(Struct, frozen=True):
    """A ``backendRef``: a cluster name and its weight. ``cluster`` is empty when the
    reference could not be resolved; requests that pick it get 500."""

    cluster: str
    weight: int = 1


class RetryPolicy(Struct, frozen=True):
    """HTTPRoute ``retry`` (Gateway API, experimental). ``retries`` is ``attempts``: how many
    times a request may be tried again after the first try. A try is retried on a connect
    failure, a reset or a timeout of the try, and on the response ``codes``. Backoff is
    exponential with full jitter from ``backoff_base_s`` (``backoff``; Envoy's 25 ms when
    unset) up to ten times that."""

    retries: int = 1
    codes: tuple[int, ...] = ()
    backoff_base_s: float = 0.025


class RouteRule(Struct, frozen=True):
    """``backend_request_timeout_s`` (``timeouts.backendRequest``) bounds each try."""

    matches: tuple[RouteMatch, ...] = (RouteMatch(path=PathMatch()),)
    filters: tuple[RouteFilter, ...] = ()
    backends: tuple[WeightedBackend, ...] = ()
    request_timeout_s: float | None = None
    backend_request_timeout_s: float | None = None
    retry: RetryPolicy | None = None


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


# --- security policy (Istio AuthorizationPolicy, RequestAuthentication) --------------------

AuthzAction = Literal["ALLOW", "DENY", "AUDIT"]


class AuthzSource(Struct, frozen=True):
    """``rules[].from[].source``: the fields are ANDed, the values of one field ORed. Values
    keep Istio's string forms (``abc``, ``abc*``, ``*abc``, ``*``; CIDRs for IP blocks)."""

    principals: tuple[str, ...] = ()
    not_principals: tuple[str, ...] = ()
    request_principals: tuple[str, ...] = ()
    not_request_principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()
    ip_blocks: tuple[str, ...] = ()
    not_ip_blocks: tuple[str, ...] = ()


class AuthzOperation(Struct, frozen=True):
    """``rules[].to[].operation``; ports are decimal strings, as in Istio."""

    hosts: tuple[str, ...] = ()
    not_hosts: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    not_paths: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    not_ports: tuple[str, ...] = ()


class AuthzCondition(Struct, frozen=True):
    """``rules[].when[]``: ``key`` is an Istio attribute such as ``request.headers[x-id]``."""

    key: str
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


class AuthzRule(Struct, frozen=True):
    """Matches when one source, one operation and every condition match; an empty list of
    sources or operations matches anything."""

    sources: tuple[AuthzSource, ...] = ()
    operations: tuple[AuthzOperation, ...] = ()
    conditions: tuple[AuthzCondition, ...] = ()


class AuthzPolicy(Struct, frozen=True):
    """An AuthorizationPolicy that applies to a listener. ``name`` is ``namespace/name``. A
    policy without rules matches nothing (an ALLOW one then denies every request)."""

    name: str
    action: AuthzAction = "ALLOW"
    rules: tuple[AuthzRule, ...] = ()


class JwtHeader(Struct, frozen=True):
    """Where a token is read from: header ``name`` (lower-case) after ``prefix``."""

    name: str
    prefix: str = ""


class JwtRule(Struct, frozen=True):
    """One ``jwtRules[]`` entry of a RequestAuthentication that applies to a listener.
    ``policy`` is ``namespace/name``. Exactly one of ``jwks_uri`` and ``jwks`` (inline JSON)
    is set. Without ``from_headers`` and ``from_params`` the token is read from
    ``Authorization: Bearer`` and the ``access_token`` query parameter."""

    policy: str
    issuer: str
    audiences: tuple[str, ...] = ()
    jwks_uri: str | None = None
    jwks: str | None = None
    from_headers: tuple[JwtHeader, ...] = ()
    from_params: tuple[str, ...] = ()
    output_payload_to_header: str | None = None  # lower-case
    forward_original_token: bool = False


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
    # Security policies that apply to this listener (gateway.config.security).
    authz_policies: tuple[AuthzPolicy, ...] = ()
    jwt_rules: tuple[JwtRule, ...] = ()


class PortBinding(Struct, frozen=True):
    """A socket: the listeners that share one address and port.

    ``mtls`` (HTTP ports only) makes the port serve mutual TLS with the proxy's own SVID:
    ``STRICT`` accepts only mTLS, ``PERMISSIVE`` mTLS and plaintext (told apart by the first
    byte). The peer's SPIFFE ID becomes the request's principal (``gateway.transport.mtls``).
    """

    address: str
    port: int
    protocol: ListenerProtocol
    listeners: tuple[Listener, ...]
    mtls: MtlsMode | None = None


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
    # Retries may add at most this share of the requests in flight to a cluster (Envoy's
    # retry budget), but always allow this many concurrent retries.
    retry_budget_percent: float = 20.0
    retry_budget_min_concurrency: int = 3
    # A request body is kept for a retry up to this size; beyond it the request is not
    # retried once its body has started to flow.
    retry_buffer_bytes: int = 64 * 1024


# --- who this proxy is, and what it reports --------------------------------------------


class Node(Struct, frozen=True):
    """The proxy's own identity and place: the fixed ``source_*`` (or ``destination_*``)
    metric labels, the locality that locality-aware balancing prefers, and the labels that
    ``failoverPriority`` matches endpoints against."""

    workload: str = "isthmus-ingress"
    namespace: str = "default"
    cluster: str = "Kubernetes"
    trust_domain: str = "cluster.local"
    region: str | None = None
    zone: str | None = None
    subzone: str | None = None
    labels: tuple[tuple[str, str], ...] = ()


class Tracing(Struct, frozen=True):
    """OpenTelemetry tracing. Sampling is parent-based: a request that carries a sampling
    decision keeps it; others are sampled at ``sampling_percent`` (Istio's default: 1%)."""

    sampling_percent: float = 1.0
    otlp_endpoint: str | None = None  # OTLP http/protobuf, e.g. http://host:4318/v1/traces
    zipkin_endpoint: str | None = None  # Zipkin JSON v2, e.g. http://host:9411/api/v2/spans
    service_name: str | None = None  # None: the node's workload


class AccessLog(Struct, frozen=True):
    """JSON-lines access log. ``path`` ``-`` is standard output."""

    path: str = "-"
    sampling_percent: float = 100.0


class Telemetry(Struct, frozen=True):
    tracing: Tracing | None = None
    access_log: AccessLog | None = None


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
    node: Node = Node()
    telemetry: Telemetry = Telemetry()
    unresolved: tuple[UnresolvedRef, ...] = ()

    def with_version(self) -> Snapshot:
        """Return a copy whose ``version`` is the hash of its content."""
        digests = {c.name: cluster_digest(c) for c in self.clusters}
        return msgspec.structs.replace(self, version=content_version(self, digest_sum(digests)))

    def cluster_map(self) -> dict[str, Cluster]:
        return {c.name: c for c in self.clusters}


_ENCODER = msgspec.json.Encoder()


def cluster_digest(cluster: Cluster) -> bytes:
    """The SHA-256 of one cluster's JSON: a leaf of the snapshot's version."""
    return hashlib.sha256(_ENCODER.encode(cluster)).digest()


# The clusters' digests are added up modulo 2**256 (a multiset hash): the sum does not
# depend on the clusters' order, and a proxy that receives only the clusters that changed
# (``gateway.config.delta``) updates it by subtracting the old digests and adding the new
# ones, without touching the thousands of clusters that stayed. The version guards against
# a delta applied to the wrong base or damaged on the way, not against a forger: the
# snapshot itself arrives over the controller's authenticated channel.
_SUM_BITS = 256
_SUM_MASK = (1 << _SUM_BITS) - 1


def digest_value(digest: bytes) -> int:
    """A cluster digest as a term of :func:`digest_sum`."""
    return int.from_bytes(digest, "big")


def digest_sum(digests: Mapping[str, bytes]) -> int:
    """The sum of the clusters' digests (by name), the clusters' part of the version."""
    return sum(map(digest_value, digests.values())) & _SUM_MASK


def add_digests(total: int, added: Iterable[bytes], removed: Iterable[bytes]) -> int:
    """``total`` with the ``added`` digests counted and the ``removed`` ones taken out."""
    return (total + sum(map(digest_value, added)) - sum(map(digest_value, removed))) & _SUM_MASK


def content_version(snapshot: Snapshot, clusters_sum: int) -> str:
    """The version of ``snapshot``'s content, given the :func:`digest_sum` of its clusters.

    The hash covers everything but the clusters directly, then the sum of the clusters'
    digests (cluster order carries no meaning: a proxy looks clusters up by name).
    """
    head = _ENCODER.encode(msgspec.structs.replace(snapshot, version="", clusters=()))
    hasher = hashlib.sha256(head)
    hasher.update(clusters_sum.to_bytes(_SUM_BITS // 8, "big"))
    return hasher.hexdigest()[:16]


def encode(snapshot: Snapshot) -> bytes:
    return msgspec.json.encode(snapshot)


def decode(data: bytes) -> Snapshot:
    return msgspec.json.decode(data, type=Snapshot)
