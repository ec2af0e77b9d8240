"""Istio DestinationRule: every field of the subset reaches the snapshot, Istio's defaults and
validation rules, refused fields named by path, host resolution, rule precedence,
portLevelSettings, and endpoint locality from EndpointSlices."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from config_support import Writer, problems

from gateway.config.compile import load_snapshot
from gateway.config.snapshot import (
    UNLIMITED,
    Cluster,
    ConnectionPool,
    Endpoint,
    HashCookie,
    LocalityFailover,
    LocalityLb,
    LocalityShare,
    OutlierDetection,
    Snapshot,
    UnresolvedRef,
)

SERVICES = """
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  annotations: {{isthmus.dev/lb-policy: {policy}}}
spec:
  ports:
    - {{name: http, port: 80}}
    - {{name: grpc, port: 9090, appProtocol: grpc}}
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: shop}}
spec:
  ports: [{{port: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{name: http, port: 8080}}, {{name: grpc, port: 9091}}]
endpoints:
  - addresses: [10.0.0.1]
"""


def rule(
    traffic_policy: str,
    *,
    name: str = "web",
    namespace: str = "shop",
    host: str = "web",
    created: str | None = None,
    api: str = "v1",
) -> str:
    """A DestinationRule document; ``traffic_policy`` is the YAML under ``trafficPolicy``."""
    stamp = f"\n  creationTimestamp: {created}" if created else ""
    body = textwrap.indent(textwrap.dedent(traffic_policy).strip(), "    ")
    policy = f"\n  trafficPolicy:\n{body}" if body else ""
    return (
        f"apiVersion: networking.istio.io/{api}\nkind: DestinationRule\n"
        f"metadata:\n  name: {name}\n  namespace: {namespace}{stamp}\n"
        f"spec:\n  host: {host}{policy}\n"
    )


def compile_with(write: Writer, *docs: str, policy: str = "LEAST_REQUEST") -> Snapshot:
    write("services.yaml", SERVICES.format(policy=policy))
    path = write("rules.yaml", "---\n".join(docs) if docs else "")
    return load_snapshot(path.parent)


def cluster(snapshot: Snapshot, name: str = "shop/web:80") -> Cluster:
    return snapshot.cluster_map()[name]


def rule_problems(write: Writer, traffic_policy: str, **kw: Any) -> list[tuple[str, str]]:
    write("services.yaml", SERVICES.format(policy="ROUND_ROBIN"))
    found = problems(write, rule(traffic_policy, **kw), name="rules.yaml")
    assert all(p.obj == f"DestinationRule {kw.get('namespace', 'shop')}/web" for p in found)
    return [(p.path, p.message) for p in found]


Getter = Callable[[Cluster], object]

# (trafficPolicy YAML, what to read on the cluster, expected, Service lb-policy annotation)
MAPPING: list[tuple[str, Getter, object, str]] = [
    ("connectionPool: {tcp: {maxConnections: 7}}", lambda c: c.pool.max_connections, 7, "L"),
    (
        "connectionPool: {tcp: {connectTimeout: 250ms}}",
        lambda c: c.pool.connect_timeout_s,
        0.25,
        "L",
    ),
    (
        "connectionPool: {http: {http1MaxPendingRequests: 3}}",
        lambda c: c.pool.http1_max_pending_requests,
        3,
        "L",
    ),
    (
        "connectionPool: {http: {http2MaxRequests: 11}}",
        lambda c: c.pool.http2_max_requests,
        11,
        "L",
    ),
    (
        "connectionPool: {http: {maxRequestsPerConnection: 1}}",
        lambda c: c.pool.max_requests_per_connection,
        1,
        "L",
    ),
    ("connectionPool: {http: {maxRetries: 2}}", lambda c: c.pool.max_retries, 2, "L"),
    ("connectionPool: {http: {idleTimeout: 1m30s}}", lambda c: c.pool.idle_timeout_s, 90.0, "L"),
    (
        "outlierDetection: {consecutive5xxErrors: 0}",
        lambda c: c.outlier and c.outlier.consecutive_5xx_errors,
        0,
        "L",
    ),
    (
        "outlierDetection: {consecutive5xxErrors: 9}",
        lambda c: c.outlier and c.outlier.consecutive_5xx_errors,
        9,
        "L",
    ),
    (
        "outlierDetection: {consecutiveGatewayErrors: 4}",
        lambda c: c.outlier and c.outlier.consecutive_gateway_errors,
        4,
        "L",
    ),
    ("outlierDetection: {interval: 1.5s}", lambda c: c.outlier and c.outlier.interval_s, 1.5, "L"),
    (
        "outlierDetection: {baseEjectionTime: 2m}",
        lambda c: c.outlier and c.outlier.base_ejection_time_s,
        120.0,
        "L",
    ),
    (
        "outlierDetection: {maxEjectionPercent: 50}",
        lambda c: c.outlier and c.outlier.max_ejection_percent,
        50,
        "L",
    ),
    (
        "outlierDetection: {minHealthPercent: 25}",
        lambda c: c.outlier and c.outlier.min_health_percent,
        25,
        "L",
    ),
    ("loadBalancer: {simple: ROUND_ROBIN}", lambda c: c.lb_policy, "ROUND_ROBIN", "L"),
    ("loadBalancer: {simple: RANDOM}", lambda c: c.lb_policy, "RANDOM", "L"),
    ("loadBalancer: {simple: LEAST_REQUEST}", lambda c: c.lb_policy, "LEAST_REQUEST", "R"),
    ("loadBalancer: {simple: LEAST_CONN}", lambda c: c.lb_policy, "LEAST_REQUEST", "R"),
    (
        "loadBalancer: {consistentHash: {httpHeaderName: X-User}}",
        lambda c: c.consistent_hash and c.consistent_hash.header,
        "x-user",
        "L",
    ),
    (
        "loadBalancer: {consistentHash: {httpCookie: {name: sid, path: /app, ttl: 1h}}}",
        lambda c: c.consistent_hash and c.consistent_hash.cookie,
        HashCookie(name="sid", path="/app", ttl_s=3600.0),
        "L",
    ),
    (
        "loadBalancer: {consistentHash: {httpCookie: {name: sid, ttl: 0s}}}",
        lambda c: c.consistent_hash and c.consistent_hash.cookie,
        HashCookie(name="sid", ttl_s=0.0),
        "L",
    ),
    (
        "loadBalancer: {consistentHash: {useSourceIp: true}}",
        lambda c: c.consistent_hash and c.consistent_hash.use_source_ip,
        True,
        "L",
    ),
    (
        "loadBalancer: {consistentHash: {useSourceIp: true, minimumRingSize: 4096}}",
        lambda c: c.consistent_hash and c.consistent_hash.minimum_ring_size,
        4096,
        "L",
    ),
    (
        "loadBalancer: {localityLbSetting: {enabled: false}}",
        lambda c: c.locality_lb,
        LocalityLb(enabled=False),
        "L",
    ),
    (
        "loadBalancer: {localityLbSetting: {enabled: true}}",
        lambda c: c.locality_lb,
        LocalityLb(enabled=True),
        "L",
    ),
    (
        """
        loadBalancer:
          localityLbSetting:
            distribute:
              - from: us-west/zone1/*
                to: {"us-west/zone1/*": 80, "us-west/zone2/*": 20}
        """,
        lambda c: c.locality_lb and c.locality_lb.distribute,
        (
            LocalityShare(
                from_="us-west/zone1/*", to=(("us-west/zone1/*", 80), ("us-west/zone2/*", 20))
            ),
        ),
        "L",
    ),
    (
        """
        loadBalancer:
          localityLbSetting:
            failover: [{from: us-east, to: eu-west}, {from: us-west, to: us-east}]
        """,
        lambda c: c.locality_lb and c.locality_lb.failover,
        (
            LocalityFailover(from_="us-east", to="eu-west"),
            LocalityFailover(from_="us-west", to="us-east"),
        ),
        "L",
    ),
    (
        """
        loadBalancer:
          localityLbSetting:
            failoverPriority: [topology.istio.io/network, version=v1]
        """,
        lambda c: c.locality_lb and c.locality_lb.failover_priority,
        ("topology.istio.io/network", "version=v1"),
        "L",
    ),
]


@pytest.mark.parametrize(
    ("policy", "get", "expected", "annotation"),
    MAPPING,
    ids=[" ".join(row[0].split())[:70] for row in MAPPING],
)
def test_each_field_maps_onto_the_cluster(
    write: Writer, policy: str, get: Getter, expected: object, annotation: str
) -> None:
    lb = {"L": "LEAST_REQUEST", "R": "RANDOM"}[annotation]
    without = cluster(compile_with(write, policy=lb))
    assert get(without) != expected  # the row proves something only if the rule changes it
    with_rule = compile_with(write, rule(policy), policy=lb)
    assert get(cluster(with_rule)) == expected
    assert get(cluster(with_rule, "shop/web:9090")) == expected  # every port of the Service
    assert with_rule.unresolved == ()


def test_istio_defaults(write: Writer) -> None:
    plain = cluster(compile_with(write))
    assert (plain.pool, plain.outlier, plain.consistent_hash, plain.locality_lb) == (
        ConnectionPool(),
        None,
        None,
        None,
    )
    assert plain.pool.max_connections == plain.pool.max_retries == UNLIMITED
    assert plain.pool.connect_timeout_s == 10.0
    defaults = cluster(
        compile_with(
            write,
            rule(
                """
                connectionPool: {tcp: {maxConnections: 0}, http: {maxRetries: 0}}
                outlierDetection: {maxEjectionPercent: 0}
                loadBalancer: {consistentHash: {httpHeaderName: x-user}}
                """
            ),
        )
    )
    assert defaults.pool == ConnectionPool()  # proto3: 0 is unset, so still unlimited
    assert defaults.outlier == OutlierDetection(
        consecutive_5xx_errors=5,
        consecutive_gateway_errors=0,
        interval_s=10.0,
        base_ejection_time_s=30.0,
        max_ejection_percent=10,
        min_health_percent=0,
    )
    assert defaults.consistent_hash is not None
    assert defaults.consistent_hash.minimum_ring_size == 1024
    assert defaults.lb_policy == "LEAST_REQUEST"  # consistentHash leaves the annotation's


def test_simple_unspecified_keeps_the_annotation(write: Writer) -> None:
    snapshot = compile_with(write, rule("loadBalancer: {simple: UNSPECIFIED}"), policy="RANDOM")
    assert cluster(snapshot).lb_policy == "RANDOM"


@pytest.mark.parametrize("api", ["v1", "v1beta1", "v1alpha3"])
def test_api_versions(write: Writer, api: str) -> None:
    snapshot = compile_with(write, rule("connectionPool: {tcp: {maxConnections: 3}}", api=api))
    assert cluster(snapshot).pool.max_connections == 3


def test_unknown_api_version_is_refused(write: Writer) -> None:
    write("services.yaml", SERVICES.format(policy="ROUND_ROBIN"))
    (problem,) = problems(write, rule("", api="v2"), name="rules.yaml")
    assert problem.path == "apiVersion"
    assert "networking.istio.io/v1 or networking.istio.io/v1beta1" in problem.message


# --- refused fields --------------------------------------------------------------------------

REFUSED = [
    ("tls: {mode: SIMPLE, insecureSkipVerify: true}", "spec.trafficPolicy.tls.insecureSkipVerify"),
    ("tunnel: {targetHost: x, targetPort: 1}", "spec.trafficPolicy.tunnel"),
    ("proxyProtocol: {version: V2}", "spec.trafficPolicy.proxyProtocol"),
    ("retryBudget: {percent: 20}", "spec.trafficPolicy.retryBudget"),
    (
        "loadBalancer: {warmupDurationSecs: 10s}",
        "spec.trafficPolicy.loadBalancer.warmupDurationSecs",
    ),
    ("loadBalancer: {warmup: {duration: 10s}}", "spec.trafficPolicy.loadBalancer.warmup"),
    (
        "connectionPool: {http: {h2UpgradePolicy: UPGRADE}}",
        "spec.trafficPolicy.connectionPool.http.h2UpgradePolicy",
    ),
    (
        "connectionPool: {http: {useClientProtocol: true}}",
        "spec.trafficPolicy.connectionPool.http.useClientProtocol",
    ),
    (
        "connectionPool: {http: {maxConcurrentStreams: 10}}",
        "spec.trafficPolicy.connectionPool.http.maxConcurrentStreams",
    ),
    (
        "connectionPool: {tcp: {tcpKeepalive: {time: 10s}}}",
        "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive",
    ),
    (
        "connectionPool: {tcp: {idleTimeout: 1h}}",
        "spec.trafficPolicy.connectionPool.tcp.idleTimeout",
    ),
    (
        "connectionPool: {tcp: {maxConnectionDuration: 1h}}",
        "spec.trafficPolicy.connectionPool.tcp.maxConnectionDuration",
    ),
    (
        "outlierDetection: {consecutiveErrors: 5}",
        "spec.trafficPolicy.outlierDetection.consecutiveErrors",
    ),
    (
        "outlierDetection: {consecutiveLocalOriginFailures: 5}",
        "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
    ),
    (
        "outlierDetection: {splitExternalLocalOriginErrors: true}",
        "spec.trafficPolicy.outlierDetection.splitExternalLocalOriginErrors",
    ),
    (
        "loadBalancer: {consistentHash: {httpQueryParameterName: u}}",
        "spec.trafficPolicy.loadBalancer.consistentHash.httpQueryParameterName",
    ),
    (
        "loadBalancer: {consistentHash: {useSourceIp: true, ringHash: {minimumRingSize: 8}}}",
        "spec.trafficPolicy.loadBalancer.consistentHash.ringHash",
    ),
    (
        "loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 7}}}",
        "spec.trafficPolicy.loadBalancer.consistentHash.maglev",
    ),
    (
        "loadBalancer: {consistentHash: {httpCookie: {name: a, ttl: 0s, attributes: []}}}",
        "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes",
    ),
    (
        "portLevelSettings: [{port: {number: 80}, tls: {mode: SIMPLE, credentialName: c}}]",
        "spec.trafficPolicy.portLevelSettings[0].tls.credentialName",
    ),
]


@pytest.mark.parametrize(("policy", "path"), REFUSED, ids=[p for _, p in REFUSED])
def test_fields_outside_the_subset_are_refused_by_name(
    write: Writer, policy: str, path: str
) -> None:
    ((where, message),) = rule_problems(write, policy)
    assert where == path
    assert message.startswith("not supported by isthmus")


@pytest.mark.parametrize(
    ("field", "yaml"),
    [
        ("subsets", "subsets: [{name: v1, labels: {version: v1}}]"),
        ("exportTo", 'exportTo: ["."]'),
        ("workloadSelector", "workloadSelector: {matchLabels: {app: a}}"),
    ],
)
def test_spec_fields_outside_the_subset_are_refused(write: Writer, field: str, yaml: str) -> None:
    write("services.yaml", SERVICES.format(policy="ROUND_ROBIN"))
    (problem,) = problems(write, rule("") + f"  {yaml}\n", name="rules.yaml")
    assert problem.path == f"spec.{field}"
    assert problem.message.startswith("not supported by isthmus")


def test_passthrough_is_refused(write: Writer) -> None:
    assert rule_problems(write, "loadBalancer: {simple: PASSTHROUGH}") == [
        ("spec.trafficPolicy.loadBalancer.simple", '"PASSTHROUGH" is not supported by isthmus')
    ]


def test_tls_maps_onto_the_cluster(write: Writer) -> None:
    # Upstream TLS came with issue 4; tests/gateway/mtls covers what it does.
    snap = compile_with(write, rule("tls: {mode: ISTIO_MUTUAL, subjectAltNames: [spiffe://td/x]}"))
    tls = cluster(snap).tls
    assert tls is not None and tls.mode == "ISTIO_MUTUAL"
    assert tls.subject_alt_names == ("spiffe://td/x",)


# --- Istio's validation rules ------------------------------------------------------------------

TP = "spec.trafficPolicy"
LB = f"{TP}.loadBalancer"
LOC = f"{LB}.localityLbSetting"
INVALID = [
    ("{}", TP, "set at least one field"),
    ("connectionPool: {}", f"{TP}.connectionPool", "set at least one of tcp and http"),
    (
        "connectionPool: {tcp: {maxConnections: -1}}",
        f"{TP}.connectionPool.tcp.maxConnections",
        "must be at least 0",
    ),
    (
        "connectionPool: {tcp: {connectTimeout: 10}}",
        f"{TP}.connectionPool.tcp.connectTimeout",
        "expected a string",
    ),
    (
        "connectionPool: {tcp: {connectTimeout: 0s}}",
        f"{TP}.connectionPool.tcp.connectTimeout",
        "at least 1ms",
    ),
    (
        "connectionPool: {http: {idleTimeout: 500us}}",
        f"{TP}.connectionPool.http.idleTimeout",
        "at least 1ms",
    ),
    (
        "outlierDetection: {interval: 1.0005s}",
        f"{TP}.outlierDetection.interval",
        "whole milliseconds",
    ),
    (
        "outlierDetection: {baseEjectionTime: 30 seconds}",
        f"{TP}.outlierDetection.baseEjectionTime",
        "is not a duration",
    ),
    (
        "outlierDetection: {maxEjectionPercent: 101}",
        f"{TP}.outlierDetection.maxEjectionPercent",
        "at most 100",
    ),
    (
        "outlierDetection: {minHealthPercent: -1}",
        f"{TP}.outlierDetection.minHealthPercent",
        "at least 0",
    ),
    (
        "outlierDetection: {consecutive5xxErrors: -1}",
        f"{TP}.outlierDetection.consecutive5xxErrors",
        "at least 0",
    ),
    (
        "loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}",
        LB,
        "set only one of simple and consistentHash",
    ),
    ("loadBalancer: {simple: FASTEST}", f"{LB}.simple", "expected one of"),
    ("loadBalancer: {consistentHash: {}}", f"{LB}.consistentHash", "set one hash key"),
    (
        "loadBalancer: {consistentHash: {httpHeaderName: a, useSourceIp: true}}",
        f"{LB}.consistentHash",
        "set only one hash key, not httpHeaderName and useSourceIp",
    ),
    (
        "loadBalancer: {consistentHash: {useSourceIp: false}}",
        f"{LB}.consistentHash.useSourceIp",
        "set it to true",
    ),
    (
        "loadBalancer: {consistentHash: {httpCookie: {name: sid}}}",
        f"{LB}.consistentHash.httpCookie.ttl",
        "required",
    ),
    (
        "loadBalancer: {consistentHash: {httpCookie: {ttl: 0s}}}",
        f"{LB}.consistentHash.httpCookie.name",
        "required field is missing",
    ),
    (
        "loadBalancer: {consistentHash: {httpCookie: {name: 'a b', ttl: 1s}}}",
        f"{LB}.consistentHash.httpCookie.name",
        "is not a cookie name",
    ),
    (
        "loadBalancer: {consistentHash: {httpHeaderName: 'a b'}}",
        f"{LB}.consistentHash.httpHeaderName",
        "is not a valid HTTP header name",
    ),
    (
        "loadBalancer: {localityLbSetting: {distribute: [{from: a/*, to: {a/*: 60, b/*: 30}}]}}",
        f"{LOC}.distribute[0].to",
        "the weights add up to 90, not 100",
    ),
    (
        "loadBalancer: {localityLbSetting: {distribute: [{from: a/*, to: {a/*: 0, b/*: 100}}]}}",
        f'{LOC}.distribute[0].to["a/*"]',
        "a weight must be 1 to 100",
    ),
    (
        "loadBalancer: {localityLbSetting: {distribute: [{from: a, to: {a: 100}}], "
        "failover: [{from: a, to: b}]}}",
        LOC,
        "distribute and failover cannot both be set",
    ),
    (
        "loadBalancer: {localityLbSetting: {distribute: [{from: us/*, to: {a: 100}}, "
        "{from: us/zone1, to: {a: 100}}]}}",
        f"{LOC}.distribute[1].from",
        '"us/zone1" overlaps "us/*"',
    ),
    (
        "loadBalancer: {localityLbSetting: {distribute: [{from: 'us-*/z', to: {a: 100}}]}}",
        f"{LOC}.distribute[0].from",
        "is not a locality",
    ),
    (
        "loadBalancer: {localityLbSetting: {distribute: [{from: 'us//z', to: {a: 100}}]}}",
        f"{LOC}.distribute[0].from",
        "is not a locality",
    ),
    (
        "loadBalancer: {localityLbSetting: {failover: [{from: us-east, to: us-east}]}}",
        f"{LOC}.failover[0]",
        "from and to must be different regions",
    ),
    (
        "loadBalancer: {localityLbSetting: {failover: [{from: us-east/z1, to: us-west}]}}",
        f"{LOC}.failover[0].from",
        "is not a region",
    ),
    (
        "loadBalancer: {localityLbSetting: {failover: [{from: us-east, to: '*'}]}}",
        f"{LOC}.failover[0].to",
        "is not a region",
    ),
    (
        "loadBalancer: {localityLbSetting: {failover: [{from: a, to: b}], "
        "failoverPriority: [topology.kubernetes.io/zone]}}",
        f"{LOC}.failoverPriority[0]",
        "cannot be combined with failover",
    ),
    (
        "loadBalancer: {localityLbSetting: {failoverPriority: ['version=']}}",
        f"{LOC}.failoverPriority[0]",
        "is not a label key or key=value",
    ),
    (
        "portLevelSettings: [{port: {number: 80}}]",
        f"{TP}.portLevelSettings[0]",
        "set at least one of loadBalancer",
    ),
    (
        "portLevelSettings: [{loadBalancer: {simple: RANDOM}}]",
        f"{TP}.portLevelSettings[0].port",
        "required field is missing",
    ),
    (
        "portLevelSettings: [{port: {number: 80}, loadBalancer: {simple: RANDOM}}, "
        "{port: {number: 80}, outlierDetection: {}}]",
        f"{TP}.portLevelSettings[1].port.number",
        "port 80 is listed twice",
    ),
    (
        "portLevelSettings: [{port: {number: 80}, connectionPool: {http: {idleTimeout: 0s}}}]",
        f"{TP}.portLevelSettings[0].connectionPool.http.idleTimeout",
        "at least 1ms",
    ),
]


@pytest.mark.parametrize(("policy", "path", "message"), INVALID, ids=[i[0][:60] for i in INVALID])
def test_istio_validation_rules(write: Writer, policy: str, path: str, message: str) -> None:
    found = rule_problems(write, policy)
    assert len(found) == 1, found
    ((where, text),) = found
    assert where == path
    assert message in text


def test_failover_priority_without_topology_labels_may_join_failover(write: Writer) -> None:
    policy = """
    loadBalancer:
      localityLbSetting:
        failover: [{from: a, to: b}]
        failoverPriority: [version]
    outlierDetection: {}
    """
    lb = cluster(compile_with(write, rule(policy))).locality_lb
    assert lb == LocalityLb(
        failover=(LocalityFailover(from_="a", to="b"),), failover_priority=("version",)
    )


@pytest.mark.parametrize(
    ("host", "message"),
    [("Web", "is not a host such as"), ("*web.shop", "is not a host such as")],
)
def test_bad_hosts(write: Writer, host: str, message: str) -> None:
    ((path, text),) = rule_problems(write, "outlierDetection: {}", host=f'"{host}"')
    assert path == "spec.host"
    assert message in text


def test_host_is_required(write: Writer) -> None:
    write("services.yaml", SERVICES.format(policy="ROUND_ROBIN"))
    text = (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: web}\nspec: {}\n"
    )
    (problem,) = problems(write, text, name="rules.yaml")
    assert (problem.path, problem.message) == ("spec.host", "required field is missing")


# --- which rule applies ---------------------------------------------------------------------

POOL = "connectionPool: {{tcp: {{maxConnections: {n}}}}}"


def max_connections(snapshot: Snapshot, name: str = "shop/web:80") -> int:
    return cluster(snapshot, name).pool.max_connections


@pytest.mark.parametrize(
    ("host", "namespace"),
    [
        ("web", "shop"),  # short name: relative to the rule's namespace
        ("web.shop.svc.cluster.local", "shop"),
        ("web.shop.svc.cluster.local", "default"),  # the proxy's namespace
        ("web.shop.svc.cluster.local", "istio-system"),  # the root namespace
        ('"*.shop.svc.cluster.local"', "shop"),
        ('"*.svc.cluster.local"', "shop"),
        ('"*"', "istio-system"),
    ],
)
def test_host_forms_that_reach_the_service(write: Writer, host: str, namespace: str) -> None:
    snapshot = compile_with(write, rule(POOL.format(n=3), host=host, namespace=namespace))
    assert max_connections(snapshot) == 3
    assert snapshot.unresolved == ()


@pytest.mark.parametrize(
    ("host", "namespace", "target", "reason"),
    [
        ("web", "default", "host web.default.svc.cluster.local", "no Service has this host"),
        ("web.shop", "shop", "host web.shop", "a host with a dot is taken as fully qualified"),
        ("web.shop.svc.cluster.local", "other", "host web.shop.svc.cluster.local", "not read"),
        ("shop.example.com", "shop", "host shop.example.com", "no Service has this host"),
    ],
)
def test_hosts_that_reach_nothing_are_recorded(
    write: Writer, host: str, namespace: str, target: str, reason: str
) -> None:
    snapshot = compile_with(write, rule(POOL.format(n=3), host=host, namespace=namespace))
    assert max_connections(snapshot) == UNLIMITED
    (note,) = snapshot.unresolved
    assert (note.source, note.field, note.target) == (
        f"DestinationRule {namespace}/web",
        "spec.host",
        target,
    )
    assert reason in note.reason


def test_exact_host_beats_a_wildcard_in_the_same_namespace(write: Writer) -> None:
    snapshot = compile_with(
        write,
        rule(POOL.format(n=3), name="all", host='"*.shop.svc.cluster.local"'),
        rule(POOL.format(n=4), name="web", host="web"),
    )
    assert max_connections(snapshot) == 4
    assert max_connections(snapshot, "shop/api:8080") == 3  # the wildcard still serves api
    assert snapshot.unresolved == ()


def test_proxy_namespace_comes_before_the_service_namespace(write: Writer) -> None:
    snapshot = compile_with(
        write,
        rule(POOL.format(n=3), name="mine", namespace="default", host="web.shop.svc.cluster.local"),
        rule(POOL.format(n=4), name="web", namespace="shop"),
        rule(POOL.format(n=5), name="root", namespace="istio-system", host='"*"'),
    )
    assert max_connections(snapshot) == 3
    assert max_connections(snapshot, "shop/api:8080") == 5  # nothing closer for api
    (note,) = snapshot.unresolved
    assert note.source == "DestinationRule shop/web"
    assert "DestinationRule default/mine takes precedence" in note.reason


def test_the_proxy_namespace_comes_from_proxy_settings(write: Writer) -> None:
    write(
        "settings.yaml",
        """
        apiVersion: isthmus.dev/v1alpha1
        kind: ProxySettings
        metadata: {name: p}
        spec: {node: {namespace: other}}
        """,
    )
    snapshot = compile_with(
        write, rule(POOL.format(n=3), namespace="other", host="web.shop.svc.cluster.local")
    )
    assert max_connections(snapshot) == 3


def test_the_oldest_rule_wins_and_newer_ones_are_recorded(write: Writer) -> None:
    snapshot = compile_with(
        write,
        rule(POOL.format(n=3), name="a-new", created="2024-06-01T00:00:00Z"),
        rule(POOL.format(n=4), name="z-old", created="2024-01-01T00:00:00Z"),
    )
    assert max_connections(snapshot) == 4
    assert snapshot.unresolved == (
        UnresolvedRef(
            source="DestinationRule shop/a-new",
            field="spec.trafficPolicy",
            target="host web.shop.svc.cluster.local",
            reason="shadowed by the older DestinationRule shop/z-old: Istio uses the "
            "trafficPolicy of the oldest rule for a host",
        ),
    )


def test_same_age_falls_back_to_the_name(write: Writer) -> None:
    snapshot = compile_with(
        write,
        rule(POOL.format(n=3), name="b"),
        rule(POOL.format(n=4), name="a", host="web.shop.svc.cluster.local"),
    )
    assert max_connections(snapshot) == 4
    assert [u.source for u in snapshot.unresolved] == ["DestinationRule shop/b"]


def test_an_older_rule_without_a_policy_does_not_hide_a_newer_one(write: Writer) -> None:
    snapshot = compile_with(
        write,
        rule("", name="old", created="2024-01-01T00:00:00Z"),
        rule(POOL.format(n=4), name="new", created="2024-06-01T00:00:00Z"),
    )
    assert max_connections(snapshot) == 4
    assert snapshot.unresolved == ()


# --- portLevelSettings ------------------------------------------------------------------------


def test_port_level_settings_replace_parts_per_port(write: Writer) -> None:
    policy = """
    connectionPool: {tcp: {maxConnections: 5}, http: {maxRetries: 2}}
    loadBalancer: {simple: ROUND_ROBIN}
    portLevelSettings:
      - port: {number: 9090}
        connectionPool: {http: {http2MaxRequests: 50}}
        outlierDetection: {consecutive5xxErrors: 2}
        loadBalancer: {simple: RANDOM}
      - port: {number: 1234}
        outlierDetection: {}
    """
    snapshot = compile_with(write, rule(policy))
    http, grpc = cluster(snapshot), cluster(snapshot, "shop/web:9090")
    assert (http.pool.max_connections, http.pool.max_retries, http.lb_policy) == (
        5,
        2,
        "ROUND_ROBIN",
    )
    assert http.outlier is None
    # The port's connectionPool replaces the whole top-level one: nothing is inherited.
    assert grpc.pool == ConnectionPool(http2_max_requests=50)
    assert grpc.outlier == OutlierDetection(consecutive_5xx_errors=2)
    assert grpc.lb_policy == "RANDOM"


def test_port_level_settings_alone_touch_only_their_port(write: Writer) -> None:
    policy = """
    portLevelSettings:
      - port: {number: 80}
        loadBalancer: {consistentHash: {httpHeaderName: x-user}}
    """
    snapshot = compile_with(write, rule(policy))
    assert cluster(snapshot).consistent_hash is not None
    assert cluster(snapshot, "shop/web:9090").consistent_hash is None


# --- endpoint locality, labels and workload ------------------------------------------------------

SLICE = """
apiVersion: v1
kind: Service
metadata: {name: db, namespace: data, annotations: {isthmus.dev/lb-policy: RANDOM}}
spec:
  ports: [{port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-east
  namespace: data
  labels:
    kubernetes.io/service-name: db
    endpointslice.kubernetes.io/managed-by: someone
    topology.kubernetes.io/region: us-east
    topology.kubernetes.io/zone: us-east-1z
    topology.istio.io/subzone: rack-1
    version: v1
addressType: IPv4
ports: [{port: 5432}]
endpoints:
  - addresses: [10.1.0.1]
    zone: us-east-1a
    targetRef: {kind: Pod, name: db-7c9d8f6b5d-x2x7k, namespace: data}
  - addresses: [10.1.0.2]
    deprecatedTopology:
      topology.kubernetes.io/region: us-west
      topology.istio.io/subzone: rack-9
    targetRef: {kind: Pod, name: db-agent-b7x9q}
  - addresses: [10.1.0.3]
    zone: us-east-1b
    targetRef: {kind: Pod, name: db-0}
  - addresses: [10.1.0.4]
    targetRef: {kind: Node, name: node-1}
"""


def test_endpoint_locality_labels_and_workload_come_from_the_slice(write: Writer) -> None:
    snapshot = load_snapshot(write("slice.yaml", SLICE).parent)
    db = cluster(snapshot, "data/db:5432")
    assert db.lb_policy == "RANDOM"
    labels = (
        ("topology.istio.io/subzone", "rack-1"),
        ("topology.kubernetes.io/region", "us-east"),
        ("topology.kubernetes.io/zone", "us-east-1z"),
        ("version", "v1"),
    )
    assert db.endpoints == (
        Endpoint(
            address="10.1.0.1",
            port=5432,
            region="us-east",
            zone="us-east-1a",
            subzone="rack-1",
            labels=labels,
            workload="db",
        ),
        Endpoint(
            address="10.1.0.2",
            port=5432,
            region="us-west",
            zone="us-east-1z",
            subzone="rack-9",
            labels=labels,
            workload="db-agent",
        ),
        Endpoint(
            address="10.1.0.3",
            port=5432,
            region="us-east",
            zone="us-east-1b",
            subzone="rack-1",
            labels=labels,
            workload="db-0",
        ),
        Endpoint(
            address="10.1.0.4",
            port=5432,
            region="us-east",
            zone="us-east-1z",
            subzone="rack-1",
            labels=labels,
        ),
    )


def test_deprecated_topology_must_be_a_string_map(write: Writer) -> None:
    text = """
    apiVersion: discovery.k8s.io/v1
    kind: EndpointSlice
    metadata: {name: s, labels: {kubernetes.io/service-name: x}}
    addressType: IPv4
    endpoints:
      - addresses: [10.0.0.1]
        deprecatedTopology: {topology.kubernetes.io/region: 5}
    """
    (problem,) = problems(write, text)
    assert problem.path == 'endpoints[0].deprecatedTopology["topology.kubernetes.io/region"]'
    assert problem.message.startswith("expected a string")
