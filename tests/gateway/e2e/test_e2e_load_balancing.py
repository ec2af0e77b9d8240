"""Load balancing over real endpoints: each endpoint is its own backend, counted by name.

A Service with three endpoints (one EndpointSlice each) gets an even round-robin spread; an
endpoint whose conditions say ``terminating: true`` (even with ``ready: true``) gets no
request; a Service annotated ``isthmus.dev/lb-policy: LEAST_REQUEST`` still spreads its
requests over every endpoint, both sequential ones and concurrent slow ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.gateway.e2e.helpers import (
    ConfigDir,
    endpoint_service_yaml,
    http_route_yaml,
    settings_yaml,
    start_gateway,
)
from tests.support.backends import HttpBackend
from tests.support.gateway import free_port

READY = "{ready: true}"


class Setup:
    def __init__(self, port: int) -> None:
        self.port = port
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def spread(self, host: str, n: int) -> Counter[str]:
        counts: Counter[str] = Counter()
        for i in range(n):
            r = self.client.get(f"/lb?i={i}", headers={"host": host})
            assert r.status_code == 200
            counts[r.headers["x-backend"]] += 1
        return counts


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    names = [f"{svc}-{i}" for svc in ("rr", "term", "lr") for i in range(3)]
    backends = {n: HttpBackend(n).start() for n in names}
    cfg = ConfigDir(tmp_path_factory.mktemp("lb") / "cfg")
    port = free_port()
    cfg.gateway(port)

    def targets(svc: str, conditions: list[str]) -> list[tuple[int, str]]:
        return [(backends[f"{svc}-{i}"].port, c) for i, c in enumerate(conditions)]

    cfg.write("rr.yaml", endpoint_service_yaml("rr", targets("rr", [READY] * 3)))
    cfg.write(
        "term.yaml",
        endpoint_service_yaml(
            "term", targets("term", [READY, "{ready: true, terminating: true}", READY])
        ),
    )
    cfg.write(
        "lr.yaml",
        endpoint_service_yaml(
            "lr", targets("lr", [READY] * 3), annotations={"isthmus.dev/lb-policy": "LEAST_REQUEST"}
        ),
    )
    for svc in ("rr", "term", "lr"):
        cfg.write(
            f"route-{svc}.yaml",
            http_route_yaml(
                svc, f"  - backendRefs: [{{name: {svc}, port: 80}}]\n", hostnames=[f"{svc}.test"]
            ),
        )
    cfg.write("settings.yaml", settings_yaml(drainTimeoutSeconds=2))
    gw = start_gateway(cfg)
    s = Setup(port)
    yield s
    s.client.close()
    gw.stop()
    for backend in backends.values():
        backend.stop()


def test_round_robin_spreads_evenly(setup: Setup) -> None:
    counts = setup.spread("rr.test", 300)
    assert set(counts) == {"rr-0", "rr-1", "rr-2"}
    # One worker, one round-robin cursor: 300 requests over 3 endpoints is 100 each.
    assert all(95 <= c <= 105 for c in counts.values()), counts


def test_terminating_endpoint_gets_no_requests(setup: Setup) -> None:
    counts = setup.spread("term.test", 200)
    assert counts["term-1"] == 0, counts
    assert counts["term-0"] > 0 and counts["term-2"] > 0, counts
    assert counts["term-0"] + counts["term-2"] == 200


def test_least_request_spreads_sequential_requests(setup: Setup) -> None:
    counts = setup.spread("lr.test", 300)
    assert set(counts) == {"lr-0", "lr-1", "lr-2"}
    assert all(c >= 50 for c in counts.values()), counts


def test_least_request_spreads_concurrent_requests(setup: Setup) -> None:
    def slow(i: int) -> str:
        with httpx.Client(timeout=10) as c:
            r = c.get(
                f"http://127.0.0.1:{setup.port}/slow?ms=300&i={i}", headers={"host": "lr.test"}
            )
        assert r.status_code == 200
        return r.headers["x-backend"]

    with ThreadPoolExecutor(max_workers=12) as pool:
        counts = Counter(pool.map(slow, range(12)))
    # Two random choices, the one with fewer active requests: no endpoint gets most of them.
    assert set(counts) == {"lr-0", "lr-1", "lr-2"}, counts
    assert max(counts.values()) <= 6, counts
