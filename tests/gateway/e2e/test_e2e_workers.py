"""Worker processes are supervised: one that dies is started again and given the active
snapshot, and the port keeps being served meanwhile by the other worker."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.e2e.helpers import (
    ConfigDir,
    backend_service_yaml,
    http_route_yaml,
    settings_yaml,
    wait_until,
)
from tests.support.backends import HttpBackend
from tests.support.gateway import GatewayProcess, free_port


def workers_of(gw: GatewayProcess) -> set[int]:
    assert gw.proc is not None
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == gw.proc.pid and b"gateway.process.worker" in cmdline:
            pids.add(int(entry.name))
    return pids


@pytest.fixture()
def running(tmp_path: Path) -> Iterator[tuple[GatewayProcess, int]]:
    backend = HttpBackend("w").start()
    cfg = ConfigDir(tmp_path / "cfg")
    port = free_port()
    cfg.gateway(port)
    cfg.write("svc.yaml", backend_service_yaml("w", backend.port))
    cfg.write("route.yaml", http_route_yaml("r", "  - backendRefs: [{name: w, port: 80}]\n"))
    cfg.write("settings.yaml", settings_yaml(drainTimeoutSeconds=2))
    gw = GatewayProcess(cfg.path, workers=2).start()
    yield gw, port
    gw.stop()
    backend.stop()


def test_a_killed_worker_is_replaced_and_serves(running: tuple[GatewayProcess, int]) -> None:
    gw, port = running

    def two_workers(excluding: int = 0) -> set[int] | None:
        pids = workers_of(gw)
        return pids if len(pids) == 2 and excluding not in pids else None

    before = wait_until(two_workers, what="2 workers")
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    # The surviving worker keeps the port served while the replacement starts.
    assert httpx.get(f"http://127.0.0.1:{port}/echo", timeout=10).status_code == 200
    after = wait_until(lambda: two_workers(victim), timeout_s=20, what="a replacement worker")
    assert victim not in after and len(after) == 2
    # Every worker answers with the active snapshot: enough fresh connections reach both.
    for _ in range(40):
        r = httpx.get(f"http://127.0.0.1:{port}/echo", headers={"connection": "close"})
        assert r.status_code == 200
        assert r.headers["x-backend"] == "w"
    assert gw.config()["workers"] == 2
    assert gw.proc is not None and gw.proc.poll() is None
