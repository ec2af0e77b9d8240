"""Embedded-only behaviour (never run against a real Consul): the ``isthmus catalog serve``
process itself (address printing, clean SIGTERM/SIGINT, persistence across a restart, a bad
data file) and session time driven by an injected clock instead of sleeping."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import consul

if TYPE_CHECKING:
    from tests.federation.catalog.conftest import CatalogProcess, InProcessCatalog


def test_restart_loses_nothing_and_indexes_stay_monotonic(
    start_catalog: Callable[..., CatalogProcess], tmp_path: Path
) -> None:
    data = tmp_path / "catalog.json"
    first = start_catalog("--data", str(data))
    c = first.client()
    c.catalog.register(
        "east", "10.0.0.1",
        service={"Service": "web-default", "Meta": {"isthmus-cluster": "east"}, "Port": 8443},
        check={"CheckID": "hb", "Status": "passing", "ServiceID": "web-default"},
    )  # fmt: skip
    c.kv.put("isthmus/leader/east", b"\x00binary\xff", flags=3)
    sid = c.session.create(name="leader", ttl=60)
    assert c.kv.put("isthmus/lock", "me", acquire=sid)
    services_index, _ = c.catalog.services()
    health_index, _ = c.health.service("web-default")
    kv_index, _ = c.kv.get("isthmus/leader/east")
    assert first.stop(signal.SIGTERM) == 0

    second = start_catalog("--data", str(data))
    c = second.client()
    index, services = c.catalog.services()
    assert services == {"web-default": []}
    assert index == services_index
    index, health = c.health.service("web-default", passing=True)
    assert index == health_index
    assert health[0]["Service"]["Meta"] == {"isthmus-cluster": "east"}
    index, entry = c.kv.get("isthmus/leader/east")
    assert (index, entry["Value"], entry["Flags"]) == (kv_index, b"\x00binary\xff", 3)
    assert c.kv.get("isthmus/lock")[1]["Session"] == sid
    assert c.session.info(sid)[1]["TTL"] == "60s"
    c.kv.put("after-restart", "x")
    assert int(c.kv.get("after-restart")[0]) > int(kv_index)
    assert second.stop(signal.SIGINT) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["catalog.json"]  # no temp files left


def test_data_file_is_written_soon_after_a_change(
    start_catalog: Callable[..., CatalogProcess], tmp_path: Path
) -> None:
    data = tmp_path / "catalog.json"
    proc = start_catalog("--data", str(data))
    proc.client().kv.put("k", "v")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if data.exists() and b'"key":"k"' in data.read_bytes():
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the data file never got the write")
    doc = json.loads(data.read_bytes())
    assert doc["format"] == "isthmus-catalog" and doc["index"] >= 1
    proc.stop()


def test_bad_data_file_is_refused_and_left_untouched(
    start_catalog: Callable[..., CatalogProcess], tmp_path: Path
) -> None:
    data = tmp_path / "catalog.json"
    data.write_bytes(b"{definitely not a catalog")
    proc = subprocess.run(
        [sys.executable, "-m", "isthmus", "catalog", "serve", "--listen", "127.0.0.1:0",
         "--data", str(data)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2
    assert str(data) in proc.stderr and "not a catalog data file" in proc.stderr
    assert data.read_bytes() == b"{definitely not a catalog"


def test_bad_listen_address_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "isthmus", "catalog", "serve", "--listen", "nowhere"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2 and "HOST:PORT" in proc.stderr


def test_fresh_catalog_has_empty_services_and_answers_root(
    start_catalog: Callable[..., CatalogProcess],
) -> None:
    proc = start_catalog()
    c = proc.client()
    index, services = c.catalog.services()
    assert services == {} and int(index) >= 1
    response = c.http.get(lambda r: r, "/")
    assert response.code == 200 and "not for production" in response.body
    assert proc.stop() == 0


def test_blocked_queries_do_not_delay_shutdown(
    start_catalog: Callable[..., CatalogProcess],
) -> None:
    proc = start_catalog()
    c = proc.client()
    index, _ = c.catalog.services()
    answers: list[Any] = []

    def watch() -> None:
        try:
            answers.append(c.catalog.services(index=index, wait="5m"))
        except Exception as exc:  # the connection is closed by the shutdown
            answers.append(exc)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    assert proc.stop(signal.SIGTERM, timeout=30) == 0
    assert time.monotonic() - started < 3
    thread.join(5)
    [answer] = answers
    assert not isinstance(answer, Exception)
    assert answer[0] == index  # answered with the current data, not dropped


# -- time on an injected clock -----------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


def test_ttl_expiry_on_injected_clock_releases_lock_and_wakes_watchers(
    inproc_catalog: InProcessCatalog,
) -> None:
    c = inproc_catalog.client()
    sid = c.session.create(name="leader", ttl=10, lock_delay=0)
    assert c.kv.put("lock", "me", acquire=sid)
    index, _ = c.kv.get("lock")
    result: dict[str, Any] = {}
    watcher = threading.Thread(
        target=lambda: result.update(answer=c.kv.get("lock", index=index, wait="30s"))
    )
    watcher.start()
    inproc_catalog.advance(9.9)
    assert c.session.renew(sid)["ID"] == sid  # renewed at 9.9 s: lives to 19.9 s
    inproc_catalog.advance(9.9)
    time.sleep(0.1)  # several timer ticks: nothing may expire yet
    assert watcher.is_alive() and c.session.info(sid)[1] is not None
    inproc_catalog.advance(0.2)
    watcher.join(5)
    assert not watcher.is_alive()
    new_index, entry = result["answer"]
    assert int(new_index) > int(index) and "Session" not in entry
    assert c.session.info(sid)[1] is None
    assert isinstance(c, consul.Consul)


def test_lock_delay_on_injected_clock(inproc_catalog: InProcessCatalog) -> None:
    c = inproc_catalog.client()
    holder = c.session.create(name="a", lock_delay=15)  # Consul's default delay
    other = c.session.create(name="b")
    assert c.kv.put("lock", "a", acquire=holder)
    c.session.destroy(holder)
    assert c.kv.put("lock", "b", acquire=other) is False
    inproc_catalog.advance(14.9)
    assert c.kv.put("lock", "b", acquire=other) is False
    inproc_catalog.advance(0.2)
    assert c.kv.put("lock", "b", acquire=other) is True


def test_ttl_expiry_with_delete_behavior_on_injected_clock(
    inproc_catalog: InProcessCatalog,
) -> None:
    c = inproc_catalog.client()
    sid = c.session.create(name="eph", ttl=10, behavior="delete", lock_delay=0)
    assert c.kv.put("ephemeral/key", "x", acquire=sid)
    inproc_catalog.advance(10.5)
    wait_until(lambda: c.kv.get("ephemeral/key")[1] is None)
    assert c.session.list()[1] == []
