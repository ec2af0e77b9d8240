"""Istio ``DestinationRule`` (``networking.istio.io/v1``, ``v1beta1``, ``v1alpha3``), a subset.

Validated by the loader: the schema refuses every field outside the subset by name, and
:meth:`DestinationRule.check` applies Istio's own validation rules. ``gateway.config.
traffic_policy`` picks the rule that applies to each Service and maps it onto the snapshot's
``ConnectionPool``, ``OutlierDetection``, ``ConsistentHash`` and ``LocalityLb`` with the
``*_policy`` methods here. docs/traffic-policy.md has the table of fields.

Implemented: ``host``; ``trafficPolicy.connectionPool`` (``tcp.maxConnections``,
``tcp.connectTimeout``, ``http.http1MaxPendingRequests``, ``http.http2MaxRequests``,
``http.maxRequestsPerConnection``, ``http.maxRetries``, ``http.idleTimeout``);
``outlierDetection`` (``consecutive5xxErrors``, ``consecutiveGatewayErrors``, ``interval``,
``baseEjectionTime``, ``maxEjectionPercent``, ``minHealthPercent``); ``loadBalancer``
(``simple``, ``consistentHash`` by ``httpHeaderName``, ``httpCookie`` or ``useSourceIp``
with ``minimumRingSize``, ``localityLbSetting``); ``tls`` (``mode`` DISABLE, SIMPLE, MUTUAL
or ISTIO_MUTUAL, ``sni``, ``subjectAltNames``, and for SIMPLE/MUTUAL ``caCertificates``,
``clientCertificate``, ``privateKey`` as inline PEM text); ``portLevelSettings`` with the
same four.

As in Istio (proto3), a count of 0 means "unset": the limits then stay unlimited
(2^32-1) and ``maxEjectionPercent`` stays 10. ``consecutive5xxErrors`` and
``consecutiveGatewayErrors`` are wrapper types, so an explicit 0 disables them.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from gateway.config.kinds import durations
from gateway.config.kinds.meta import HeaderName, Object, Port
from gateway.config.schema import NOT_SUPPORTED, NOT_YET, FieldIssue, Model, expect, item, join
from gateway.config.snapshot import (
    UNLIMITED,
    ConnectionPool,
    ConsistentHash,
    HashCookie,
    LbPolicy,
    LocalityFailover,
    LocalityLb,
    LocalityShare,
    OutlierDetection,
    UpstreamTls,
)

ISTIO_NETWORKING = "networking.istio.io"
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"
DEFAULT_RING_SIZE = 1024
DEFAULT_MAX_EJECTION_PERCENT = 10

Int32 = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
UInt32 = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
Percent = Annotated[int, msgspec.Meta(ge=0, le=100)]
DurationText = Annotated[str, msgspec.Meta(max_length=64)]
# A host as Istio accepts it: a DNS name, optionally with "*." in front, or "*" alone.
HOST = r"^(\*|(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$"
Host = Annotated[
    str,
    expect(
        "a host such as reviews, reviews.prod.svc.cluster.local or *.prod.svc.cluster.local",
        pattern=HOST,
        max_length=253,
    ),
]
# region[/zone[/subzone]], where the last segment may be "*" (or the whole thing "*").
LOCALITY = re.compile(r"^(\*|[^/*\s]+(/[^/*\s]+){0,2}(/\*)?)$")
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
COOKIE_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _refused(what: str) -> str:
    return f"{NOT_SUPPORTED} ({what})"


# --- connectionPool -----------------------------------------------------------------------


class TcpSettings(Model, frozen=True, kw_only=True):
    unsupported_fields = {
        "tcpKeepalive": _refused("TCP keepalive"),
        "maxConnectionDuration": _refused("maximum connection duration"),
        "idleTimeout": _refused("TCP idle timeout; use http.idleTimeout"),
    }

    max_connections: Int32 = 0
    connect_timeout: DurationText | None = None


class HttpSettings(Model, frozen=True, kw_only=True):
    unsupported_fields = {
        "h2UpgradePolicy": _refused("the upstream protocol comes from the Service appProtocol"),
        "useClientProtocol": _refused("the upstream protocol comes from the Service appProtocol"),
        "maxConcurrentStreams": _refused("the peer's SETTINGS_MAX_CONCURRENT_STREAMS is used"),
    }

    http1_max_pending_requests: Int32 = 0
    http2_max_requests: Int32 = 0
    max_requests_per_connection: Int32 = 0
    max_retries: Int32 = 0
    idle_timeout: DurationText | None = None


class ConnectionPoolSpec(Model, frozen=True, kw_only=True):
    tcp: TcpSettings | None = None
    http: HttpSettings | None = None

    def issues(self, path: str) -> list[FieldIssue]:
        issues: list[FieldIssue] = []
        if self.tcp is None and self.http is None:
            issues.append((path, "set at least one of tcp and http"))
        if self.tcp is not None and self.tcp.connect_timeout is not None:
            _duration(join(join(path, "tcp"), "connectTimeout"), self.tcp.connect_timeout, issues)
        if self.http is not None and self.http.idle_timeout is not None:
            _duration(join(join(path, "http"), "idleTimeout"), self.http.idle_timeout, issues)
        return issues

    def pool(self) -> ConnectionPool:
        tcp = self.tcp or TcpSettings()
        http = self.http or HttpSettings()
        base = ConnectionPool()
        return ConnectionPool(
            max_connections=tcp.max_connections or UNLIMITED,
            connect_timeout_s=(
                durations.seconds(tcp.connect_timeout)
                if tcp.connect_timeout is not None
                else base.connect_timeout_s
            ),
            http1_max_pending_requests=http.http1_max_pending_requests or UNLIMITED,
            http2_max_requests=http.http2_max_requests or UNLIMITED,
            max_requests_per_connection=http.max_requests_per_connection,
            max_retries=http.max_retries or UNLIMITED,
            idle_timeout_s=(
                durations.seconds(http.idle_timeout) if http.idle_timeout is not None else None
            ),
        )


# --- outlierDetection ---------------------------------------------------------------------


class OutlierDetectionSpec(Model, frozen=True, kw_only=True):
    unsupported_fields = {
        "consecutiveErrors": _refused(
            "deprecated in Istio; use consecutive5xxErrors or consecutiveGatewayErrors"
        ),
        "consecutiveLocalOriginFailures": _refused("split local-origin errors"),
        "splitExternalLocalOriginErrors": _refused("split local-origin errors"),
    }

    consecutive_5xx_errors: UInt32 | None = msgspec.field(default=None, name="consecutive5xxErrors")
    consecutive_gateway_errors: UInt32 | None = None
    interval: DurationText | None = None
    base_ejection_time: DurationText | None = None
    max_ejection_percent: Percent = 0
    min_health_percent: Percent = 0

    def issues(self, path: str) -> list[FieldIssue]:
        issues: list[FieldIssue] = []
        if self.interval is not None:
            _duration(join(path, "interval"), self.interval, issues)
        if self.base_ejection_time is not None:
            _duration(join(path, "baseEjectionTime"), self.base_ejection_time, issues)
        return issues

    def outlier(self) -> OutlierDetection:
        base = OutlierDetection()
        return OutlierDetection(
            consecutive_5xx_errors=(
                base.consecutive_5xx_errors
                if self.consecutive_5xx_errors is None
                else self.consecutive_5xx_errors
            ),
            consecutive_gateway_errors=self.consecutive_gateway_errors or 0,
            interval_s=(
                durations.seconds(self.interval) if self.interval is not None else base.interval_s
            ),
            base_ejection_time_s=(
                durations.seconds(self.base_ejection_time)
                if self.base_ejection_time is not None
                else base.base_ejection_time_s
            ),
            max_ejection_percent=self.max_ejection_percent or DEFAULT_MAX_EJECTION_PERCENT,
            min_health_percent=self.min_health_percent,
        )


# --- loadBalancer ---------------------------------------------------------------------------


class HttpCookieSpec(Model, frozen=True, kw_only=True):
    unsupported_fields = {"attributes": _refused("cookie attributes")}

    name: str
    path: str | None = None
    ttl: DurationText | None = None

    def issues(self, path: str) -> list[FieldIssue]:
        issues: list[FieldIssue] = []
        if not COOKIE_NAME.match(self.name):
            issues.append((join(path, "name"), f'"{self.name}" is not a cookie name'))
        if self.path is not None and not self.path.startswith("/"):
            issues.append((join(path, "path"), f'"{self.path}" must start with "/"'))
        if self.ttl is None:
            issues.append((join(path, "ttl"), "required (as in Istio); 0s makes a session cookie"))
        else:
            problem = durations.duration_problem(self.ttl, allow_zero=True)
            if problem:
                issues.append((join(path, "ttl"), problem))
        return issues


class ConsistentHashSpec(Model, frozen=True, kw_only=True):
    unsupported_fields = {
        "httpQueryParameterName": _refused("hashing on a query parameter"),
        "ringHash": _refused("use minimumRingSize"),
        "maglev": _refused("Maglev hashing; a ring hash is used"),
    }

    http_header_name: HeaderName | None = None
    http_cookie: HttpCookieSpec | None = None
    use_source_ip: bool | None = None
    minimum_ring_size: Annotated[int, msgspec.Meta(ge=0, le=8 * 1024 * 1024)] = 0

    def issues(self, path: str) -> list[FieldIssue]:
        keys = [
            name
            for name, value in (
                ("httpHeaderName", self.http_header_name),
                ("httpCookie", self.http_cookie),
                ("useSourceIp", self.use_source_ip),
            )
            if value is not None
        ]
        if not keys:
            return [(path, "set one hash key: httpHeaderName, httpCookie or useSourceIp")]
        if len(keys) > 1:
            return [(path, f"set only one hash key, not {' and '.join(keys)}")]
        if self.use_source_ip is False:
            return [(join(path, "useSourceIp"), "false hashes on nothing; set it to true")]
        if self.http_cookie is not None:
            return self.http_cookie.issues(join(path, "httpCookie"))
        return []

    def consistent_hash(self) -> ConsistentHash:
        cookie = None
        if (c := self.http_cookie) is not None:
            ttl = durations.seconds(c.ttl) if c.ttl is not None else None
            cookie = HashCookie(name=c.name, path=c.path, ttl_s=ttl)
        return ConsistentHash(
            header=self.http_header_name.lower() if self.http_header_name else None,
            cookie=cookie,
            use_source_ip=bool(self.use_source_ip),
            minimum_ring_size=self.minimum_ring_size or DEFAULT_RING_SIZE,
        )


class DistributeSpec(Model, frozen=True, kw_only=True):
    from_: str = msgspec.field(name="from")
    to: dict[str, UInt32]


class FailoverSpec(Model, frozen=True, kw_only=True):
    from_: str = msgspec.field(name="from")
    to: str


class LocalityLbSpec(Model, frozen=True, kw_only=True):
    enabled: bool | None = None
    distribute: tuple[DistributeSpec, ...] = ()
    failover: tuple[FailoverSpec, ...] = ()
    failover_priority: tuple[str, ...] = ()

    def issues(self, path: str) -> list[FieldIssue]:
        issues: list[FieldIssue] = []
        if self.distribute and self.failover:
            issues.append((path, "distribute and failover cannot both be set"))
        if self.failover:
            for i, label in enumerate(self.failover_priority):
                if label.split("=", 1)[0] in (REGION_LABEL, ZONE_LABEL, SUBZONE_LABEL):
                    issues.append(
                        (
                            item(join(path, "failoverPriority"), i),
                            f'the topology label "{label}" cannot be combined with failover',
                        )
                    )
        sources: list[tuple[str, str]] = []
        for i, rule in enumerate(self.distribute):
            here = item(join(path, "distribute"), i)
            sources.append((join(here, "from"), rule.from_))
            targets = [(join(join(here, "to"), loc), loc) for loc in rule.to]
            issues += _locality_issues(targets)
            for loc, weight in rule.to.items():
                if not 1 <= weight <= 100:
                    issues.append((join(join(here, "to"), loc), "a weight must be 1 to 100"))
            total = sum(rule.to.values())
            if total != 100:
                issues.append((join(here, "to"), f"the weights add up to {total}, not 100"))
        issues += _locality_issues(sources)
        for i, failover in enumerate(self.failover):
            here = item(join(path, "failover"), i)
            for name, value in (("from", failover.from_), ("to", failover.to)):
                if not value or "/" in value or "*" in value or value.strip() != value:
                    issues.append((join(here, name), f'"{value}" is not a region (no "/" or "*")'))
            if failover.from_ == failover.to:
                issues.append((here, "from and to must be different regions"))
        for i, label in enumerate(self.failover_priority):
            key, _, value = label.partition("=")
            if not LABEL_KEY.match(key) or ("=" in label and not value):
                issues.append(
                    (
                        item(join(path, "failoverPriority"), i),
                        f'"{label}" is not a label key or key=value',
                    )
                )
        return issues

    def locality_lb(self) -> LocalityLb:
        return LocalityLb(
            enabled=self.enabled is not False,
            distribute=tuple(
                LocalityShare(from_=d.from_, to=tuple(sorted(d.to.items())))
                for d in self.distribute
            ),
            failover=tuple(LocalityFailover(from_=f.from_, to=f.to) for f in self.failover),
            failover_priority=self.failover_priority,
        )


SimpleLb = Literal[
    "UNSPECIFIED", "ROUND_ROBIN", "LEAST_REQUEST", "LEAST_CONN", "RANDOM", "PASSTHROUGH"
]


class LoadBalancerSpec(Model, frozen=True, kw_only=True):
    unsupported_fields = {
        "warmupDurationSecs": _refused("slow start"),
        "warmup": _refused("slow start"),
    }
    unsupported_values = {"simple": ("PASSTHROUGH",)}

    simple: SimpleLb | None = None
    consistent_hash: ConsistentHashSpec | None = None
    locality_lb_setting: LocalityLbSpec | None = None

    def issues(self, path: str) -> list[FieldIssue]:
        issues: list[FieldIssue] = []
        if self.simple is not None and self.consistent_hash is not None:
            issues.append((path, "set only one of simple and consistentHash"))
        if self.consistent_hash is not None:
            issues += self.consistent_hash.issues(join(path, "consistentHash"))
        if self.locality_lb_setting is not None:
            issues += self.locality_lb_setting.issues(join(path, "localityLbSetting"))
        return issues

    def lb_policy(self) -> LbPolicy | None:
        """The policy ``simple`` names; None when it names none (UNSPECIFIED or unset)."""
        if self.simple == "LEAST_CONN":  # Istio's deprecated alias
            return "LEAST_REQUEST"
        if self.simple in ("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"):
            return self.simple
        return None


# --- tls ------------------------------------------------------------------------------------

TlsMode = Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]
_PEM_ONLY = "inline PEM text (file paths on the proxy are not read)"


class ClientTlsSpec(Model, frozen=True, kw_only=True):
    """``trafficPolicy.tls`` (Istio ``ClientTLSSettings``)."""

    unsupported_fields = {
        "credentialName": f"{NOT_YET}; put the PEM in caCertificates, clientCertificate and "
        "privateKey",
        "insecureSkipVerify": _refused("the server is always verified"),
        "caCrl": _refused("certificate revocation lists"),
    }

    mode: TlsMode = "DISABLE"
    sni: Annotated[str, msgspec.Meta(max_length=253)] | None = None
    subject_alt_names: tuple[str, ...] = ()
    ca_certificates: str | None = None
    client_certificate: str | None = None
    private_key: str | None = None

    def issues(self, path: str) -> list[FieldIssue]:
        issues: list[FieldIssue] = []
        pem_fields = (
            ("caCertificates", self.ca_certificates),
            ("clientCertificate", self.client_certificate),
            ("privateKey", self.private_key),
        )
        for name, value in pem_fields:
            if value is None:
                continue
            if self.mode in ("ISTIO_MUTUAL", "DISABLE"):
                issues.append(
                    (join(path, name), f"must not be set with mode {self.mode}"
                     + (": the proxy's own SVID and bundle are used" if self.mode != "DISABLE"
                        else ""))
                )  # fmt: skip
            elif "-----BEGIN " not in value:
                issues.append((join(path, name), f"must be {_PEM_ONLY}"))
        if self.mode == "MUTUAL" and (not self.client_certificate or not self.private_key):
            issues.append((path, "mode MUTUAL needs clientCertificate and privateKey"))
        if self.mode == "SIMPLE" and (self.client_certificate or self.private_key):
            issues.append((path, "clientCertificate and privateKey are for mode MUTUAL"))
        for i, san in enumerate(self.subject_alt_names):
            if not san:
                issues.append((item(join(path, "subjectAltNames"), i), "must not be empty"))
        return issues

    def upstream_tls(self) -> UpstreamTls | None:
        """The snapshot form; None for DISABLE (plaintext)."""
        if self.mode == "DISABLE":
            return None
        return UpstreamTls(
            mode=self.mode,
            sni=self.sni or None,
            subject_alt_names=self.subject_alt_names,
            ca_pem=self.ca_certificates,
            client_cert_pem=self.client_certificate,
            client_key_pem=self.private_key,
        )


# --- trafficPolicy ----------------------------------------------------------------------------


class PolicyParts(Model, frozen=True, kw_only=True):
    """What a traffic policy and a port-level setting have in common."""

    load_balancer: LoadBalancerSpec | None = None
    connection_pool: ConnectionPoolSpec | None = None
    outlier_detection: OutlierDetectionSpec | None = None
    tls: ClientTlsSpec | None = None

    def part_issues(self, path: str) -> list[FieldIssue]:
        issues: list[FieldIssue] = []
        if self.load_balancer is not None:
            issues += self.load_balancer.issues(join(path, "loadBalancer"))
        if self.connection_pool is not None:
            issues += self.connection_pool.issues(join(path, "connectionPool"))
        if self.outlier_detection is not None:
            issues += self.outlier_detection.issues(join(path, "outlierDetection"))
        if self.tls is not None:
            issues += self.tls.issues(join(path, "tls"))
        return issues

    def is_empty(self) -> bool:
        parts = (self.load_balancer, self.connection_pool, self.outlier_detection, self.tls)
        return all(p is None for p in parts)


class PortSelector(Model, frozen=True, kw_only=True):
    number: Port


class PortTrafficPolicy(PolicyParts, frozen=True, kw_only=True):
    port: PortSelector


class TrafficPolicySpec(PolicyParts, frozen=True, kw_only=True):
    unsupported_fields = {
        "tunnel": _refused("tunnelling"),
        "proxyProtocol": _refused("upstream PROXY protocol"),
        "retryBudget": _refused("set the retry budget in ProxySettings"),
    }

    port_level_settings: Annotated[
        tuple[PortTrafficPolicy, ...], msgspec.Meta(max_length=4096)
    ] = ()

    def issues(self, path: str) -> list[FieldIssue]:
        if self.is_empty() and not self.port_level_settings:
            return [(path, "set at least one field")]
        issues = self.part_issues(path)
        seen: set[int] = set()
        for i, setting in enumerate(self.port_level_settings):
            here = item(join(path, "portLevelSettings"), i)
            if setting.is_empty():
                issues.append(
                    (
                        here,
                        "set at least one of loadBalancer, connectionPool, outlierDetection "
                        "and tls",
                    )
                )
            number = setting.port.number
            if number in seen:
                issues.append(
                    (join(join(here, "port"), "number"), f"port {number} is listed twice")
                )
            seen.add(number)
            issues += setting.part_issues(here)
        return issues

    def for_port(self, port: int) -> PolicyParts:
        """The policy for one Service port: each of the three parts is replaced as a whole by
        the port-level setting for ``port`` that sets it (Istio does not merge inside one)."""
        for setting in self.port_level_settings:
            if setting.port.number == port:
                return PolicyParts(
                    load_balancer=setting.load_balancer or self.load_balancer,
                    connection_pool=setting.connection_pool or self.connection_pool,
                    outlier_detection=setting.outlier_detection or self.outlier_detection,
                    tls=setting.tls or self.tls,
                )
        return PolicyParts(
            load_balancer=self.load_balancer,
            connection_pool=self.connection_pool,
            outlier_detection=self.outlier_detection,
            tls=self.tls,
        )


class DestinationRuleSpec(Model, frozen=True, kw_only=True):
    unsupported_fields = {
        "subsets": _refused("subsets; route to separate Services instead"),
        "exportTo": _refused("rules are visible in every namespace, Istio's default"),
        "workloadSelector": _refused("rules apply to every proxy"),
    }

    host: Host
    traffic_policy: TrafficPolicySpec | None = None


class DestinationRule(Object, frozen=True, kw_only=True):
    kind_name = "DestinationRule"
    api_versions = tuple(f"{ISTIO_NETWORKING}/{v}" for v in ("v1", "v1beta1", "v1alpha3"))

    spec: DestinationRuleSpec

    def check(self) -> list[FieldIssue]:
        if self.spec.traffic_policy is None:
            return []
        return self.spec.traffic_policy.issues("spec.trafficPolicy")


def _duration(path: str, text: str, issues: list[FieldIssue]) -> None:
    problem = durations.duration_problem(text)
    if problem:
        issues.append((path, problem))


def _locality_issues(localities: list[tuple[str, str]]) -> list[FieldIssue]:
    """Istio's rules for a list of locality patterns: ``*`` only as a whole last segment,
    no empty segment, and no pattern that overlaps one before it."""
    issues: list[FieldIssue] = []
    prefixes: list[tuple[str, tuple[str, ...]]] = []
    for path, locality in localities:
        if not LOCALITY.match(locality):
            issues.append(
                (
                    path,
                    f'"{locality}" is not a locality region[/zone[/subzone]] '
                    '(no empty part; "*" only as the whole last part)',
                )
            )
            continue
        parts = tuple(p for p in locality.split("/") if p != "*")
        for earlier, other in prefixes:
            shorter = min(len(parts), len(other))
            if parts[:shorter] == other[:shorter]:
                issues.append((path, f'"{locality}" overlaps "{earlier}"'))
                break
        prefixes.append((locality, parts))
    return issues
