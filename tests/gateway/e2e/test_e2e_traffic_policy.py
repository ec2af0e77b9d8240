"""DestinationRule traffic policy and active health checks against misbehaving upstreams.

Circuit breaking fails fast with 503 ``UO``; outlier detection ejects a failing endpoint and
lets it back after a growing time; locality-aware balancing keeps traffic in the proxy's
locality (``r1/z1``) and moves it in failover order as endpoints fail their health checks;
panic mode ignores health below ``minHealthPercent``; consistent hashing pins a key to an
endpoint; ``RANDOM`` spreads; ``maxRequestsPerConnection``, ``idleTimeout`` and
``connectTimeout`` shape upstream connections. Time is controlled by short intervals in the
configuration; tests wait on counters, not on fixed sleeps.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.gateway.e2e.helpers import ConfigDir, settings_yaml, start_gateway, wait_until
from tests.gateway.e2e.resilience_support import (
    NODE_LOCALITY,
    Client,
    destination_rule_yaml,
    route_yaml,
    service_yaml,
    until,
)
from tests.support.faulty import FaultyBackend, blackhole_port
from tests.support.gateway import GatewayProcess, free_port

HEALTH = {
    "health.isthmus.dev/path": "/healthz",
    "health.isthmus.dev/interval": "50ms",
    "health.isthmus.dev/timeout": "50ms",
    "health.isthmus.dev/healthy-threshold": "1",
    "health.isthmus.dev/unhealthy-threshold": "1",
}


@dataclass
class Setup:
    client: Client
    gateway: GatewayProcess
    b: dict[str, FaultyBackend]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    names = [
        "cb-0", "pend-0", "od-bad", "od-good",
        "loc-a", "loc-b", "loc-c", "loc-d",
        "panic-0", "panic-1", "nopanic-0",
        "hash-0", "hash-1", "hash-2", "cookie-0", "cookie-1", "cookie-2",
        "rand-0", "rand-1", "rand-2", "mrpc-0", "plain-0", "idle-0",
    ]  # fmt: skip
    b = {n: FaultyBackend(n).start() for n in names}
    listener, fillers, hole = blackhole_port()
    cfg = ConfigDir(tmp_path_factory.mktemp("policy") / "cfg")
    port = free_port()
    cfg.gateway(port)
    cfg.write(
        "settings.yaml",
        settings_yaml(drainTimeoutSeconds=1, node=f"{{locality: {NODE_LOCALITY}}}"),
    )

    def svc(name: str, members: list[tuple[str, str]], policy: str | None = None,
            annotations: dict[str, str] | None = None) -> None:  # fmt: skip
        eps = [(b[m].port, loc) for m, loc in members]
        cfg.write(f"{name}.yaml", service_yaml(name, eps, annotations=annotations))
        if policy:
            cfg.write(f"{name}-dr.yaml", destination_rule_yaml(name, policy))
        cfg.write(f"{name}-route.yaml", route_yaml(f"{name}.test", name))

    here = NODE_LOCALITY
    svc("cb", [("cb-0", here)], "{connectionPool: {http: {http2MaxRequests: 2}}}")
    svc(
        "pend",
        [("pend-0", here)],
        "{connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}}",
    )
    svc(
        "od",
        [("od-bad", here), ("od-good", here)],
        "{outlierDetection: {consecutive5xxErrors: 2, interval: 200ms, baseEjectionTime: 400ms,"
        " maxEjectionPercent: 100}}",
    )
    svc(
        "loc",
        [("loc-a", "r1/z1"), ("loc-b", "r1/z2"), ("loc-c", "r2/z1"), ("loc-d", "r3/z1")],
        "{loadBalancer: {simple: ROUND_ROBIN, localityLbSetting: {enabled: true,"
        " failover: [{from: r1, to: r3}]}}}",
        HEALTH,
    )
    svc(
        "panic",
        [("panic-0", here), ("panic-1", here)],
        "{outlierDetection: {minHealthPercent: 50}}",
        HEALTH,
    )
    svc("nopanic", [("nopanic-0", here)], None, HEALTH)
    svc(
        "hash",
        [("hash-0", here), ("hash-1", here), ("hash-2", here)],
        "{loadBalancer: {consistentHash: {httpHeaderName: x-user}}}",
    )
    svc(
        "cookie",
        [("cookie-0", here), ("cookie-1", here), ("cookie-2", here)],
        "{loadBalancer: {consistentHash: {httpCookie: {name: sticky, path: /, ttl: 60s}}}}",
    )
    svc(
        "rand",
        [("rand-0", here), ("rand-1", here), ("rand-2", here)],
        "{loadBalancer: {simple: RANDOM}}",
    )
    svc("mrpc", [("mrpc-0", here)], "{connectionPool: {http: {maxRequestsPerConnection: 1}}}")
    svc("plain", [("plain-0", here)])
    svc("idle", [("idle-0", here)], "{connectionPool: {http: {idleTimeout: 200ms}}}")
    cfg.write("hole.yaml", service_yaml("hole", [(hole, here)]))
    cfg.write(
        "hole-dr.yaml",
        destination_rule_yaml("hole", "{connectionPool: {tcp: {connectTimeout: 200ms}}}"),
    )
    cfg.write("hole-route.yaml", route_yaml("hole.test", "hole"))  # fmt: skip
    gw = start_gateway(cfg)
    yield Setup(Client(port, gw.admin_url), gw, b)
    gw.stop()
    for backend in b.values():
        backend.stop()
    for s in [listener, *fillers]:
        s.close()


# -- connection pool: circuit breaking ------------------------------------------------------


def test_http2_max_requests_fails_fast_with_uo(setup: Setup) -> None:
    backend = setup.b["cb-0"]
    backend.delay_s = 0.8
    try:
        results = setup.client.concurrent("cb.test", 5)
    finally:
        backend.delay_s = 0.0
    ok = [t for s, t in results if s == 200]
    refused = [t for s, t in results if s == 503]
    assert len(ok) == 2 and len(refused) == 3
    assert max(refused) < 0.5 < min(ok)  # refused at once, not after waiting
    assert setup.client.metric("istio_requests_total", response_flags="UO") >= 3
    assert (
        setup.client.metric("isthmus_upstream_overflows_total", cluster_name="default/cb:80") >= 3
    )


def test_max_connections_queue_and_pending_overflow(setup: Setup) -> None:
    """One connection, one request may wait for it; the third is refused."""
    backend = setup.b["pend-0"]
    backend.reset_counts()
    backend.delay_s = 0.5
    try:
        results = setup.client.concurrent("pend.test", 3)
    finally:
        backend.delay_s = 0.0
    statuses = Counter(s for s, _ in results)
    assert statuses == {200: 2, 503: 1}
    assert backend.max_open_connections == 1
    waited = max(t for s, t in results if s == 200)
    assert waited >= 0.9  # the queued request waited for the first one's connection


# -- outlier detection -----------------------------------------------------------------------


def test_outlier_ejection_and_growing_return(setup: Setup) -> None:
    """Two 503s in a row eject the endpoint for the base time (400 ms); it comes back at
    the next interval (200 ms) after that; failing again at once ejects it for twice as
    long, since no interval passed in health to wear the multiplier down."""
    bad = setup.b["od-bad"]
    client = setup.client
    bad.mode = "503"
    try:

        def ejections() -> float:
            return client.metric("isthmus_outlier_ejections_total", cluster_name="default/od:80")

        def eject() -> float:
            # Timed from before the requests that cause the ejection: the ejection happens
            # after this instant, so the time until the endpoint returns is a true lower
            # bound of the ejection time (timing from when the metric is seen would take the
            # observation's own delay off it).
            started = time.monotonic()
            n = ejections()
            until(lambda: client.get("od.test") is not None and ejections() > n, "an ejection")
            return started

        t = eject()
        before = bad.requests
        assert client.backends("od.test", 10) == Counter({"od-good": 10})
        assert bad.requests == before
        until(lambda: _probe_reaches(client, bad), "return after the first ejection")
        first = time.monotonic() - t
        t = eject()
        until(lambda: _probe_reaches(client, bad), "return after the second ejection")
        second = time.monotonic() - t
    finally:
        bad.mode = "ok"
    assert first >= 0.35
    assert second >= 0.75 and second > first
    assert client.metric("isthmus_outlier_ejections_total", cluster_name="default/od:80") >= 2


def _probe_reaches(client: Client, bad: FaultyBackend) -> bool:
    n = bad.requests
    client.get("od.test")
    client.get("od.test")
    return bad.requests > n


# -- locality failover, health checks, panic ------------------------------------------------


def test_locality_failover_order_follows_health_checks(setup: Setup) -> None:
    a, b, c, d = (setup.b[f"loc-{x}"] for x in "abcd")
    client = setup.client
    client.wait_only("loc.test", a, "traffic stays in r1/z1")
    assert client.backends("loc.test", 20) == Counter({"loc-a": 20})
    try:
        a.healthy = False
        client.wait_only("loc.test", b, "failover to the same region (r1/z2)")
        b.healthy = False
        client.wait_only("loc.test", d, "failover to r3, the failover target, before r2")
        d.healthy = False
        client.wait_only("loc.test", c, "failover to any other region last")
        a.healthy = True
        client.wait_only("loc.test", a, "back home once r1/z1 is healthy")
    finally:
        for x in (a, b, c, d):
            x.healthy = True
    assert a.health_checks > 0  # the active checker found it, no live request had to fail


def test_active_health_check_removes_endpoint_without_failed_requests(setup: Setup) -> None:
    p0, p1 = setup.b["panic-0"], setup.b["panic-1"]
    client = setup.client
    try:
        p0.healthy = False
        client.wait_only("panic.test", p1, "the unhealthy endpoint is out of rotation")
        p0.reset_counts()
        assert client.statuses("panic.test", 10) == {200: 10}
        assert p0.requests == 0
    finally:
        p0.healthy = True


def test_panic_mode_below_min_health_percent(setup: Setup) -> None:
    p0, p1, lone = setup.b["panic-0"], setup.b["panic-1"], setup.b["nopanic-0"]
    client = setup.client
    try:
        for x in (p0, p1, lone):
            x.healthy = False
        wait_until(lambda: client.get("nopanic.test").status_code == 503, what="no healthy host")
        assert client.get("nopanic.test").status_code == 503
        # Both endpoints fail their checks, but minHealthPercent 50 puts the cluster in panic:
        # it balances over every endpoint rather than refusing.
        seen = client.backends("panic.test", 10)
        assert set(seen) == {"panic-0", "panic-1"}
    finally:
        for x in (p0, p1, lone):
            x.healthy = True
    assert client.metric("istio_requests_total", response_flags="UH") >= 1


# -- load balancing -----------------------------------------------------------------------------


def test_consistent_hash_on_header(setup: Setup) -> None:
    client = setup.client
    for user in ("alice", "bob", "carol"):
        seen = Counter(
            client.get("hash.test", "/", **{"x-user": user}).headers["x-backend"] for _ in range(8)
        )
        assert len(seen) == 1, seen
    spread = {client.get("hash.test", "/", **{"x-user": f"u{i}"}).headers["x-backend"]
              for i in range(30)}  # fmt: skip
    assert len(spread) > 1


def test_consistent_hash_cookie_is_set_and_sticks(setup: Setup) -> None:
    client = setup.client
    first = client.get("cookie.test")
    cookie = first.headers["set-cookie"]
    assert cookie.startswith("sticky=") and "Path=/" in cookie and "Max-Age=60" in cookie
    value = cookie.split(";")[0]
    seen = {client.get("cookie.test", "/", cookie=value).headers["x-backend"] for _ in range(8)}
    assert len(seen) == 1
    assert "set-cookie" not in client.get("cookie.test", "/", cookie=value).headers


def test_random_spreads_over_every_endpoint(setup: Setup) -> None:
    seen = setup.client.backends("rand.test", 60)
    assert set(seen) == {"rand-0", "rand-1", "rand-2"}


# -- connection shaping ---------------------------------------------------------------------


def test_max_requests_per_connection(setup: Setup) -> None:
    limited, plain = setup.b["mrpc-0"], setup.b["plain-0"]
    for x in (limited, plain):
        x.reset_counts()
    for _ in range(5):
        assert setup.client.get("mrpc.test").status_code == 200
        assert setup.client.get("plain.test").status_code == 200
    assert limited.connections == 5
    assert plain.connections == 1


def test_idle_timeout_closes_upstream_connections(setup: Setup) -> None:
    backend = setup.b["idle-0"]
    assert setup.client.get("idle.test").status_code == 200
    took = until(lambda: backend.open_connections == 0, "idle upstream connection closed", 3.0)
    assert took < 2.0


def test_connect_timeout(setup: Setup) -> None:
    t0 = time.monotonic()
    r = setup.client.get("hole.test")
    assert r.status_code == 503
    assert time.monotonic() - t0 < 1.5
    assert setup.client.metric("istio_requests_total", response_flags="UF") >= 1
