"""The admin API of a gateway running ``--workers 2``: /ready, /config and /metrics.

``/config`` has the version and the compiled snapshot; ``/metrics`` is Prometheus text with
Istio's standard metrics and label names, and counts requests across both workers: N
requests on N connections, which SO_REUSEPORT spreads over the workers (checked in /proc:
each worker holds some of them), sum to exactly N. ``promtool check metrics`` parses the
output; its only complaint may be the one that Istio's own metric name
``istio_request_duration_milliseconds`` always draws. A real Prometheus scrapes the admin
port and answers a PromQL query over Istio's labels with the same N.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.e2e.helpers import (
    ConfigDir,
    backend_service_yaml,
    http_route_yaml,
    open_socket,
    read_response,
    settings_yaml,
    wait_until,
)
from tests.support.backends import HttpBackend
from tests.support.gateway import GatewayProcess, free_port

N = 60
ISTIO_LABELS = {
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
}
# promtool's lint of a name Istio chose; everything else it reports is a failure.
KNOWN_LINT = re.compile(
    r'^istio_request_duration_milliseconds use base unit "seconds" instead of "milliseconds"$'
)


class Setup:
    def __init__(self, gw: GatewayProcess, port: int) -> None:
        self.gw, self.port = gw, port
        self.per_worker: dict[int, int] = {}


def worker_connections(gw: GatewayProcess, port: int) -> dict[int, int]:
    """Established connections on ``port`` held by each worker process (child pid -> count),
    from /proc: the workers' socket inodes matched against /proc/net/tcp."""
    assert gw.proc is not None
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == gw.proc.pid:
                children.append(int(entry.name))
    established: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01":  # ESTABLISHED
            established.add(fields[9])  # inode
    counts = {}
    for pid in children:
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        counts[pid] = len(inodes & established)
    return counts


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    backend = HttpBackend("metrics").start()
    cfg = ConfigDir(tmp_path_factory.mktemp("admin") / "cfg")
    port = free_port()
    cfg.gateway(port)
    cfg.write("svc.yaml", backend_service_yaml("metrics", backend.port))
    cfg.write(
        "route.yaml",
        http_route_yaml(
            "r", "  - backendRefs: [{name: metrics, port: 80}]\n", hostnames=["metrics.test"]
        ),
    )
    cfg.write("settings.yaml", settings_yaml(drainTimeoutSeconds=2))
    gw = GatewayProcess(cfg.path, workers=2).start()
    # N requests, each on its own connection, all held open until the end, so that the
    # kernel spreads them over the workers and we can see which worker holds which.
    socks = []
    for i in range(N):
        sock = open_socket(port)
        sock.sendall(f"GET /m?i={i} HTTP/1.1\r\nHost: metrics.test\r\n\r\n".encode())
        assert read_response(sock, bytearray())[0] == 200
        socks.append(sock)
    per_worker = worker_connections(gw, port)
    for sock in socks:
        sock.close()
    for _ in range(3):
        r = httpx.get(f"http://127.0.0.1:{port}/m", headers={"host": "nowhere.test"})
        assert r.status_code == 404
    s = Setup(gw, port)
    s.per_worker = per_worker
    yield s
    gw.stop()
    backend.stop()


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out.append((sample.labels, sample.value))
    return out


def test_ready(setup: Setup) -> None:
    r = httpx.get(f"{setup.gw.admin_url}/ready")
    assert r.status_code == 200


def test_config_has_version_and_snapshot(setup: Setup) -> None:
    config = setup.gw.config()
    assert isinstance(config["version"], str) and config["version"]
    assert config["workers"] == 2
    assert config["last_error"] is None
    snapshot = config["snapshot"]
    assert isinstance(snapshot, dict)
    assert snapshot["version"] == config["version"]
    assert [p["port"] for p in snapshot["ports"]] == [setup.port]
    assert "default/metrics:80" in [c["name"] for c in snapshot["clusters"]]
    assert setup.gw.config()["version"] == config["version"]  # stable while nothing changes


def test_requests_counted_across_workers(setup: Setup) -> None:
    # Both workers served some of the connections ...
    assert len(setup.per_worker) == 2, setup.per_worker
    assert sum(setup.per_worker.values()) == N, setup.per_worker
    assert all(count > 0 for count in setup.per_worker.values()), setup.per_worker
    # ... and /metrics adds up what both counted.
    text = setup.gw.metrics()
    ok = [
        (labels, value)
        for labels, value in _samples(text, "istio_requests_total")
        if labels.get("destination_service_name") == "metrics"
    ]
    assert sum(v for _, v in ok) == N
    labels = ok[0][0]
    assert set(labels) >= ISTIO_LABELS, ISTIO_LABELS - set(labels)
    assert labels["reporter"] == "source"
    assert labels["destination_service"] == "metrics.default.svc.cluster.local"
    assert labels["destination_service_namespace"] == "default"
    assert labels["response_code"] == "200"
    assert labels["request_protocol"] == "http"
    assert labels["response_flags"] == "-"
    counts = [
        v
        for labels, v in _samples(text, "istio_request_duration_milliseconds_count")
        if labels.get("destination_service_name") == "metrics"
    ]
    assert sum(counts) == N


def test_no_route_counted_with_its_flag(setup: Setup) -> None:
    samples = _samples(setup.gw.metrics(), "istio_requests_total")
    not_found = [(labels, v) for labels, v in samples if labels.get("response_code") == "404"]
    assert sum(v for _, v in not_found) == 3
    assert {labels["response_flags"] for labels, _ in not_found} == {"NR"}


def test_metrics_content_type(setup: Setup) -> None:
    r = httpx.get(f"{setup.gw.admin_url}/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_promtool_check_metrics(setup: Setup) -> None:
    if shutil.which("promtool") is None:
        if not os.environ.get("CI"):
            pytest.skip("promtool is not installed (apt-get install prometheus); CI requires it")
        pytest.fail("promtool is required in CI")
    out = subprocess.run(
        ["promtool", "check", "metrics"],
        input=setup.gw.metrics(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    problems = [line.strip() for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    unexpected = [p for p in problems if not KNOWN_LINT.match(p)]
    assert not unexpected, problems
    # 0: clean; 3: lint findings only (all of them the known one, checked above).
    assert out.returncode in (0, 3), (out.returncode, problems)


def test_real_prometheus_scrapes_and_answers_promql(setup: Setup, tmp_path: Path) -> None:
    """Debian's Prometheus scrapes /metrics once a second; PromQL over Istio's labels gives
    the requests the gateway served, as an Istio dashboard's query would."""
    if shutil.which("prometheus") is None:
        if not os.environ.get("CI"):
            pytest.skip("prometheus is not installed (apt-get install prometheus)")
        pytest.fail("prometheus is required in CI")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: isthmus\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{setup.gw.admin_port}']}}]\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    query = (
        'sum(istio_requests_total{reporter="source",destination_service_name="metrics",'
        'response_code="200",request_protocol="http"})'
    )

    def answer() -> float | None:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query})
        except httpx.HTTPError:
            return None
        result = r.json().get("data", {}).get("result", []) if r.status_code == 200 else []
        return float(result[0]["value"][1]) if result else None

    try:
        assert wait_until(answer, timeout_s=30, interval_s=0.5, what="a PromQL answer") == N
        up = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": "up"}).json()
        assert up["data"]["result"][0]["value"][1] == "1"
        # The proxy's own state: a histogram quantile as dashboards draw it, and the
        # endpoints the cluster balances over.
        own = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/query",
            params={"query": 'sum(isthmus_upstream_endpoints{cluster_name="default/metrics:80"})'},
        ).json()
        assert float(own["data"]["result"][0]["value"][1]) >= 1
        p99 = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/query",
            params={"query": "histogram_quantile(0.99, sum by (le) "
                    "(istio_request_duration_milliseconds_bucket))"},
        ).json()  # fmt: skip
        assert p99["data"]["result"], p99
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
