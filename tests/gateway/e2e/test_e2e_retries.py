"""HTTPRoute ``retry`` against misbehaving upstreams: codes, attempts, backoff, per-try
timeouts, connect failures and resets, ``maxRetries`` and the retry budget.

Each scenario has a Service with one bad endpoint (or only bad ones) and a good one, and
two routes to it: one with a retry policy and one without, so every test shows both that
retries make the difference and that the bad endpoint really was tried.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.gateway.e2e.helpers import ConfigDir, settings_yaml, start_gateway
from tests.gateway.e2e.resilience_support import (
    Client,
    destination_rule_yaml,
    route_yaml,
    service_yaml,
)
from tests.support.backends import HttpBackend
from tests.support.faulty import FaultyBackend
from tests.support.gateway import GatewayProcess, free_port

RETRY = "retry: {codes: [503], attempts: 2, backoff: 1ms}"


@dataclass
class Setup:
    client: Client
    gateway: GatewayProcess
    bad: dict[str, FaultyBackend]
    good: dict[str, FaultyBackend]
    closed_port: int


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    modes = {"code": "503", "reset": "reset", "pertry": "hang", "budget": "503", "maxr": "503",
             "replay": "503", "closer": "close"}  # fmt: skip
    bad = {k: FaultyBackend(f"{k}-bad", mode).start() for k, mode in modes.items()}
    good = {k: FaultyBackend(f"{k}-good").start()
            for k in ("code", "reset", "pertry", "connect", "closer")}  # fmt: skip
    closed_port = free_port()  # nothing listens there: connections are refused
    cfg = ConfigDir(tmp_path_factory.mktemp("retries") / "cfg")
    port = free_port()
    cfg.gateway(port)
    cfg.write("settings.yaml", settings_yaml(drainTimeoutSeconds=1, retryBufferBytes=4096))
    echo = HttpBackend("replay-good").start()
    cfg.write("replay.yaml", service_yaml("replay", [(bad["replay"].port, "r1/z1"),
                                                     (echo.port, "r1/z1")]))  # fmt: skip
    for k in ("code", "reset", "pertry", "closer"):
        cfg.write(f"{k}.yaml", service_yaml(k, [(bad[k].port, "r1/z1"), (good[k].port, "r1/z1")]))
    connect = [(closed_port, "r1/z1"), (good["connect"].port, "r1/z1")]
    cfg.write("connect.yaml", service_yaml("connect", connect))
    cfg.write("budget.yaml", service_yaml("budget", [(bad["budget"].port, "r1/z1")]))
    cfg.write("maxr.yaml", service_yaml("maxr", [(bad["maxr"].port, "r1/z1")]))
    cfg.write(
        "maxr-dr.yaml", destination_rule_yaml("maxr", "{connectionPool: {http: {maxRetries: 1}}}")
    )
    routes = [
        route_yaml("code.test", "code", RETRY),
        route_yaml("code-noretry.test", "code"),
        route_yaml("reset.test", "reset", "retry: {attempts: 2, backoff: 1ms}"),
        route_yaml("reset-noretry.test", "reset"),
        route_yaml("connect.test", "connect", "retry: {attempts: 2, backoff: 1ms}"),
        route_yaml("connect-noretry.test", "connect"),
        route_yaml(
            "pertry.test", "pertry",
            "retry: {attempts: 2, backoff: 1ms}", "timeouts: {backendRequest: 300ms}",
        ),
        route_yaml("pertry-noretry.test", "pertry", "timeouts: {backendRequest: 300ms}"),
        route_yaml("budget.test", "budget", "retry: {codes: [503], attempts: 3, backoff: 1ms}"),
        route_yaml("maxr.test", "maxr", "retry: {codes: [503], attempts: 3, backoff: 1ms}"),
        route_yaml("replay.test", "replay", RETRY),
        route_yaml("closer.test", "closer", "retry: {attempts: 2, backoff: 1ms}"),
        route_yaml("closer-noretry.test", "closer"),
    ]  # fmt: skip
    cfg.write("routes.yaml", "---".join(routes))
    gw = start_gateway(cfg)
    yield Setup(Client(port, gw.admin_url), gw, bad, good, closed_port)
    gw.stop()
    echo.stop()
    for b in [*bad.values(), *good.values()]:
        b.stop()


def test_retry_on_status_code(setup: Setup) -> None:
    bad = setup.bad["code"]
    bad.reset_counts()
    assert setup.client.statuses("code.test", 20) == {200: 20}
    assert bad.requests > 0  # round robin did send tries there; the retries saved them
    assert setup.client.statuses("code-noretry.test", 20)[503] > 0


def test_retry_on_reset(setup: Setup) -> None:
    bad = setup.bad["reset"]
    bad.reset_counts()
    assert setup.client.statuses("reset.test", 20) == {200: 20}
    assert bad.requests > 0
    assert setup.client.statuses("reset-noretry.test", 20)[503] > 0


def test_retry_when_the_upstream_accepts_and_closes(setup: Setup) -> None:
    bad = setup.bad["closer"]
    bad.reset_counts()
    assert setup.client.statuses("closer.test", 20) == {200: 20}
    assert bad.connections > 0  # tries did meet the endpoint that hangs up
    assert setup.client.statuses("closer-noretry.test", 20)[503] > 0


def test_retry_on_connect_failure(setup: Setup) -> None:
    assert setup.client.statuses("connect.test", 20) == {200: 20}
    without = setup.client.statuses("connect-noretry.test", 20)
    assert without[503] > 0
    assert setup.client.metric("istio_requests_total", response_flags="UF") > 0


def test_per_try_timeout_then_retry(setup: Setup) -> None:
    bad = setup.bad["pertry"]
    bad.reset_counts()
    results = [setup.client.get("pertry.test", f"/?i={i}") for i in range(6)]
    assert [r.status_code for r in results] == [200] * 6
    assert bad.requests > 0
    # A hanging try costs one per-try timeout, not the whole request.
    assert max(r.elapsed.total_seconds() for r in results) < 2.0
    statuses = setup.client.statuses("pertry-noretry.test", 6)
    assert statuses[504] > 0


def test_retries_exhausted_answer_the_last_response_with_urx(setup: Setup) -> None:
    bad = setup.bad["budget"]
    bad.reset_counts()
    r = setup.client.get("budget.test")
    assert r.status_code == 503
    assert r.headers["x-backend"] == "budget-bad"  # the upstream's own answer
    assert bad.requests == 4  # the first try and three retries
    assert setup.client.metric("istio_requests_total", response_flags="URX") >= 1


def test_max_retries_bounds_retries_in_flight(setup: Setup) -> None:
    """``maxRetries: 1``: of ten overlapping failing requests only one may retry at a time,
    so at most one chain of three retries happens (the budget alone would allow three
    chains at once)."""
    bad = setup.bad["maxr"]
    bad.reset_counts()
    bad.delay_s = 0.3
    try:
        results = setup.client.concurrent("maxr.test", 10)
    finally:
        bad.delay_s = 0.0
    assert [s for s, _ in results] == [503] * 10
    assert 10 < bad.requests <= 13


def test_retry_budget_bounds_extra_load(setup: Setup) -> None:
    """Every try fails slowly, so the requests overlap: without the budget each would take
    four tries (3 retries); with it, retries in flight stay under 20% of the requests in
    flight (at least 3), so the extra load stays small."""
    bad = setup.bad["budget"]
    bad.reset_counts()
    bad.delay_s = 0.3
    try:
        n = 40
        results = setup.client.concurrent("budget.test", n)
    finally:
        bad.delay_s = 0.0
    assert [s for s, _ in results] == [503] * n
    extra = bad.requests - n
    assert extra > 0  # some retries were allowed
    # The first wave may retry 20% of the 40 in flight; the later waves, with few requests
    # left in flight, at most the minimum of 3 each (3 retries per request); requests that
    # do not arrive together (a loaded machine) stretch that a little.
    assert extra <= 0.3 * n + 3 * 3, f"{extra} retries for {n} requests"
    assert bad.requests < n * 2  # without the budget: n * 4


def test_request_bodies_are_replayed_up_to_the_buffer_limit(setup: Setup) -> None:
    """A body within ``retryBufferBytes`` (4 KiB here) is sent again, whole, to the next
    endpoint; a larger one is not retried once it has flowed to the failing endpoint."""
    bad = setup.bad["replay"]
    small = bytes(range(256)) * 8  # 2 KiB
    statuses = []
    for i in range(6):
        r = setup.client.http.post(f"/echo?small={i}", content=small,
                                   headers={"host": "replay.test"})  # fmt: skip
        statuses.append(r.status_code)
        assert r.json()["body_sha256"] == hashlib.sha256(small).hexdigest()
    assert statuses == [200] * 6
    bad.reset_counts()
    big = bytes(range(256)) * 64  # 16 KiB
    big_statuses = Counter(
        setup.client.http.post(f"/echo?big={i}", content=big,
                               headers={"host": "replay.test"}).status_code
        for i in range(6)
    )  # fmt: skip
    assert bad.requests > 0
    assert big_statuses[503] == bad.requests  # every try that met the bad endpoint failed
