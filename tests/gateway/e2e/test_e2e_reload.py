"""Configuration reload on a running gateway, observed through real traffic and ``/config``.

A changed file is picked up by the watcher: once ``/config`` reports the new version, new
requests go to the new backend (every worker applied it before the version is reported).
With ``--no-watch``, SIGHUP reloads. A slow request in flight across a reload that removes
its backend's Service completes normally, and a keep-alive connection opened before the
reload carries requests to the new backend after it. A bad file (an unknown field) is
refused: the old version stays, ``last_error`` names the file and the field, and traffic
still flows; fixing the file clears the error.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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


def route_to(backend: str) -> str:
    return http_route_yaml("main", f"  - backendRefs: [{{name: {backend}, port: 80}}]\n")


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, HttpBackend]]:
    bs = {n: HttpBackend(n).start() for n in ("old", "new")}
    yield bs
    for b in bs.values():
        b.stop()


class Running:
    def __init__(self, cfg: ConfigDir, gw: GatewayProcess, port: int) -> None:
        self.cfg, self.gw, self.port = cfg, gw, port
        self.url = f"http://127.0.0.1:{port}"

    def backend_of(self, path: str = "/echo") -> str:
        r = httpx.get(self.url + path, timeout=10)
        assert r.status_code == 200, r.text
        return r.headers["x-backend"]

    def version(self) -> str:
        v = self.gw.config()["version"]
        assert isinstance(v, str)
        return v


def _start(tmp_path: Path, backends: dict[str, HttpBackend], *extra: str) -> Running:
    cfg = ConfigDir(tmp_path / "cfg")
    port = free_port()
    cfg.gateway(port)
    cfg.write("svc-old.yaml", backend_service_yaml("old", backends["old"].port))
    cfg.write("svc-new.yaml", backend_service_yaml("new", backends["new"].port))
    cfg.write("route.yaml", route_to("old"))
    cfg.write("settings.yaml", settings_yaml(drainTimeoutSeconds=5))
    gw = GatewayProcess(cfg.path, extra_args=list(extra)).start()
    return Running(cfg, gw, port)


@pytest.fixture
def running(tmp_path: Path, backends: dict[str, HttpBackend]) -> Iterator[Running]:
    r = _start(tmp_path, backends)
    yield r
    r.gw.stop()


@pytest.fixture
def running_no_watch(tmp_path: Path, backends: dict[str, HttpBackend]) -> Iterator[Running]:
    r = _start(tmp_path, backends, "--no-watch")
    yield r
    r.gw.stop()


def test_file_change_reroutes_new_requests(running: Running) -> None:
    assert running.backend_of() == "old"
    old_version = running.version()
    running.cfg.write("route.yaml", route_to("new"))
    new_version = running.gw.wait_version_change(old_version, timeout_s=10)
    assert new_version != old_version
    # The version is reported only after every worker applied the snapshot.
    assert [running.backend_of() for _ in range(10)] == ["new"] * 10
    assert running.gw.config()["last_error"] is None


def test_sighup_reloads(running_no_watch: Running) -> None:
    r = running_no_watch
    assert r.backend_of() == "old"
    old_version = r.version()
    r.cfg.write("route.yaml", route_to("new"))
    # The watcher is off: only the signal can make the gateway read the change.
    r.gw.signal(signal.SIGHUP)
    r.gw.wait_version_change(old_version, timeout_s=10)
    assert r.backend_of() == "new"


def test_in_flight_request_survives_reload(
    running_no_watch: Running, backends: dict[str, HttpBackend]
) -> None:
    r = running_no_watch
    limits = httpx.Limits(max_connections=1)
    with (
        httpx.Client(base_url=r.url, limits=limits, timeout=10) as keep_alive,
        ThreadPoolExecutor(1) as pool,
    ):
        assert keep_alive.get("/echo").headers["x-backend"] == "old"
        slow = pool.submit(httpx.get, r.url + "/slow?ms=1500&tag=inflight", timeout=10)
        backends["old"].wait_for(lambda s: s.query == "ms=1500&tag=inflight")
        old_version = r.version()
        # The new snapshot routes elsewhere and no longer has the in-flight request's backend.
        r.cfg.write("route.yaml", route_to("new"))
        (r.cfg.path / "svc-old.yaml").unlink()
        r.gw.signal(signal.SIGHUP)
        r.gw.wait_version_change(old_version, timeout_s=10)
        assert not slow.done(), "the slow request finished before the reload; test is void"
        clusters = [c["name"] for c in r.gw.config()["snapshot"]["clusters"]]  # type: ignore[index]
        assert not any("old" in name for name in clusters), clusters
        # A keep-alive connection from before the reload now reaches the new backend.
        assert keep_alive.get("/echo").headers["x-backend"] == "new"
        response = slow.result(timeout=10)
    assert response.status_code == 200
    assert response.headers["x-backend"] == "old"
    assert response.json()["query"] == "ms=1500&tag=inflight"


def test_bad_config_is_refused_and_old_one_stays(running: Running) -> None:
    old_version = running.version()
    bad = route_to("new").replace("  - backendRefs:", "  - bogusField: 1\n    backendRefs:")
    path = running.cfg.write("route.yaml", bad)

    def refused() -> str | None:
        error = running.gw.config()["last_error"]
        return error if isinstance(error, str) else None

    error = wait_until(refused, timeout_s=10, what="last_error in /config")
    assert str(path) in error
    assert "bogusField" in error and "unknown field" in error
    assert running.version() == old_version
    # Traffic keeps flowing on the last good configuration.
    assert [running.backend_of() for _ in range(5)] == ["old"] * 5
    # Fixing the file applies it and clears the error.
    running.cfg.write("route.yaml", route_to("new"))
    running.gw.wait_version_change(old_version, timeout_s=10)
    assert running.gw.config()["last_error"] is None
    assert running.backend_of() == "new"
