"""Configuration and clients for the resilience end-to-end tests.

One gateway serves every scenario, each on its own hostname and Service, so the scenarios do
not share endpoints or counters. Endpoints are :class:`~tests.support.faulty.FaultyBackend`
servers whose behaviour a test switches while the gateway runs. The proxy's own locality is
``r1/z1`` (ProxySettings ``node.locality``).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.gateway.e2e.helpers import endpoint_service_yaml, http_route_yaml, wait_until
from tests.support.faulty import FaultyBackend

NODE_LOCALITY = "r1/z1"


def service_yaml(
    name: str,
    endpoints: Iterable[tuple[int, str]],
    *,
    annotations: dict[str, str] | None = None,
) -> str:
    """A ready Service endpoint per ``(port, locality)``; the locality is ``region/zone``."""
    pairs = list(endpoints)
    return endpoint_service_yaml(
        name,
        [(port, "{ready: true}") for port, _ in pairs],
        annotations=annotations,
        localities=[loc for _, loc in pairs],
    )


def destination_rule_yaml(name: str, traffic_policy: str) -> str:
    """``traffic_policy`` is flow-style YAML for ``spec.trafficPolicy``."""
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: default}}
spec:
  host: {name}
  trafficPolicy: {traffic_policy}
"""


def route_yaml(host: str, service: str, *extra: str) -> str:
    """An HTTPRoute for ``host`` to ``service``; each ``extra`` is one field of the rule in
    flow style (``retry: {...}``, ``timeouts: {...}``)."""
    rule = f"  - backendRefs: [{{name: {service}, port: 80}}]\n"
    for field in extra:
        rule += f"    {field}\n"
    name = host.replace(".", "-")
    return http_route_yaml(name, rule, hostnames=[host])


class Client:
    def __init__(self, port: int, admin_url: str) -> None:
        self.port = port
        self.admin_url = admin_url
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15)

    def get(self, host: str, path: str = "/", **headers: str) -> httpx.Response:
        return self.http.get(path, headers={"host": host, **headers})

    def statuses(self, host: str, n: int) -> Counter[int]:
        return Counter(self.get(host, f"/?i={i}").status_code for i in range(n))

    def backends(self, host: str, n: int) -> Counter[str]:
        """Which backend answered each of ``n`` sequential requests (status 200 only)."""
        seen: Counter[str] = Counter()
        for i in range(n):
            r = self.get(host, f"/?i={i}")
            seen[r.headers.get("x-backend", f"status-{r.status_code}")] += 1
        return seen

    def concurrent(self, host: str, n: int, path: str = "/") -> list[tuple[int, float]]:
        """``n`` requests at once, each on its own connection: (status, seconds) each."""

        def one(i: int) -> tuple[int, float]:
            with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=15) as c:
                t0 = time.monotonic()
                r = c.get(f"{path}?i={i}", headers={"host": host})
                return r.status_code, time.monotonic() - t0

        with ThreadPoolExecutor(n) as pool:
            return list(pool.map(one, range(n)))

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels``."""
        text = httpx.get(f"{self.admin_url}/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            m = re.match(r"^(\w+)(\{(.*)\})? (\S+)$", line)
            if m is None or m.group(1) != name:
                continue
            found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(m.group(4))
        return total

    def wait_only(
        self, host: str, backend: FaultyBackend, what: str, timeout_s: float = 10.0
    ) -> None:
        """Poll until a few requests in a row all reach ``backend``."""

        def probe() -> bool:
            return self.backends(host, 4) == Counter({backend.name: 4})

        wait_until(probe, timeout_s=timeout_s, interval_s=0.05, what=what)


def until(predicate: Callable[[], bool], what: str, timeout_s: float = 10.0) -> float:
    """Wait for ``predicate``; return how long it took."""
    t0 = time.monotonic()
    wait_until(predicate, timeout_s=timeout_s, interval_s=0.01, what=what)
    return time.monotonic() - t0
