"""Access logs from a running gateway: one JSON line per request, with Envoy's response
flags, the request id the upstream saw, the upstream host and cluster and the try count.

Two workers write to one file (``O_APPEND``); every line must parse on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.e2e.helpers import ConfigDir, settings_yaml, start_gateway, wait_until
from tests.gateway.e2e.resilience_support import route_yaml, service_yaml
from tests.support.backends import HttpBackend
from tests.support.faulty import FaultyBackend
from tests.support.gateway import GatewayProcess, free_port


@dataclass
class Setup:
    port: int
    log: Path
    gateway: GatewayProcess
    backend: HttpBackend
    bad: FaultyBackend

    def lines(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def entry(self, predicate: Any) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for e in self.lines():
                if predicate(e):
                    return e
            return None

        return wait_until(find, what="the access log entry")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    backend = HttpBackend("alog").start()
    bad = FaultyBackend("alog-bad", "503").start()
    base = tmp_path_factory.mktemp("alog")
    log = base / "access.log"
    cfg = ConfigDir(base / "cfg")
    port = free_port()
    cfg.gateway(port)
    cfg.write(
        "settings.yaml",
        settings_yaml(drainTimeoutSeconds=1, telemetry=f"{{accessLog: {{path: {log}}}}}"),
    )
    cfg.write("web.yaml", service_yaml("web", [(backend.port, "r1/z1")]))
    cfg.write("bad.yaml", service_yaml("bad", [(bad.port, "r1/z1")]))
    cfg.write(
        "routes.yaml",
        route_yaml("web.test", "web")
        + "---"
        + route_yaml("bad.test", "bad", "retry: {codes: [503], attempts: 1, backoff: 1ms}"),
    )
    gw = start_gateway(cfg, workers=2)
    yield Setup(port, log, gw, backend, bad)
    gw.stop()
    backend.stop()
    bad.stop()


def test_entry_has_every_field(setup: Setup) -> None:
    r = httpx.get(
        f"http://127.0.0.1:{setup.port}/echo?x=1",
        headers={"host": "web.test", "user-agent": "alog-test/1"},
    )
    assert r.status_code == 200
    seen_id = r.json()["headers"]["x-request-id"]  # generated, and forwarded upstream
    e = setup.entry(lambda e: e["path"] == "/echo?x=1")
    assert e["request_id"] == seen_id
    assert e["method"] == "GET" and e["authority"] == "web.test"
    assert e["protocol"] == "HTTP/1.1" and e["response_code"] == 200
    assert e["response_flags"] == "-"
    assert e["upstream_cluster"] == "default/web:80"
    assert e["upstream_host"] == f"127.0.0.1:{setup.backend.port}"
    assert e["bytes_sent"] > 0 and e["duration"] >= 0
    assert e["user_agent"] == "alog-test/1"
    assert e["downstream_remote_address"].startswith("127.0.0.1:")
    assert e["upstream_request_attempt_count"] == 1
    assert e["start_time"].endswith("Z")
    for key in ("trace_id", "downstream_peer_principal", "bytes_received"):
        assert key in e


def test_client_request_id_is_kept(setup: Setup) -> None:
    httpx.get(
        f"http://127.0.0.1:{setup.port}/echo?keep",
        headers={"host": "web.test", "x-request-id": "abc-123"},
    )
    assert setup.entry(lambda e: e["path"] == "/echo?keep")["request_id"] == "abc-123"


def test_flags_for_local_replies_and_retries(setup: Setup) -> None:
    httpx.get(f"http://127.0.0.1:{setup.port}/nowhere", headers={"host": "none.test"})
    nr = setup.entry(lambda e: e["path"] == "/nowhere")
    assert (nr["response_code"], nr["response_flags"]) == (404, "NR")
    httpx.get(f"http://127.0.0.1:{setup.port}/fails", headers={"host": "bad.test"})
    urx = setup.entry(lambda e: e["path"] == "/fails")
    assert (urx["response_code"], urx["response_flags"]) == (503, "URX")
    assert urx["upstream_request_attempt_count"] == 2


def test_two_workers_write_whole_lines(setup: Setup) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{setup.port}") as c:
        for i in range(100):
            c.get(f"/echo?many={i}", headers={"host": "web.test", "connection": "close"})
    wait_until(
        lambda: sum(1 for e in setup.lines() if "many=" in e["path"]) == 100,
        what="100 entries",
    )
