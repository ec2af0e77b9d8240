"""Three clusters, each with its Kubernetes API double and its federation controller
(a real ``isthmus federation run`` process), sharing one embedded catalog process.

What issue 5 asks to see: an export reaching another cluster's proxy snapshot within 2 s and
leaving it when deleted; a controller restart with zero deregistrations (its own write
counters, and the catalog entry's indexes); two clusters exporting one service side by side;
a 30 s catalog outage that changes no snapshot, then convergence; a 410 relist that deletes
nothing; and leader failover between two replicas within the session TTL plus the lock delay.
Proxies are represented by long-polling the snapshot API as a proxy does.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import consul
import httpx
import msgspec
import pytest

from gateway.config.snapshot import Snapshot
from tests.gateway.e2e.helpers import wait_until
from tests.support.gateway import free_port
from tests.support.kube_api import KubeApiDouble

ROOT = Path(__file__).resolve().parents[3]
GATEWAYS = {"east": "10.0.1.1", "west": "10.0.2.1", "north": "10.0.3.1"}
SESSION_TTL_S = 10
LOCK_DELAY_S = 1


def _proc(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "isthmus", *args],
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


@dataclass
class Catalog:
    port: int
    data: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = _proc(
            ["catalog", "serve", "--listen", f"127.0.0.1:{self.port}", "--data", str(self.data)],
            self.log,
        )
        client = consul.Consul(host="127.0.0.1", port=self.port)

        def up() -> bool:
            try:
                return bool(client.status.leader())
            except Exception:
                return False

        wait_until(up, timeout_s=20, what="the catalog")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)
            self.proc = None

    def entries(self, service: str) -> list[dict[str, Any]]:
        _, nodes = consul.Consul(host="127.0.0.1", port=self.port).catalog.service(service)
        return list(nodes)


@dataclass
class Controller:
    cluster: str
    kube: KubeApiDouble
    kubeconfig: Path
    catalog: Catalog
    log: Path
    replica: str = "a"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Controller:
        self.proc = _proc(
            ["federation", "run", "--cluster", self.cluster, "--catalog", self.catalog.url,
             "--kubeconfig", str(self.kubeconfig), "--listen", f"127.0.0.1:{self.port}",
             "--gateway", f"{GATEWAYS[self.cluster]}:15443", "--locality", f"{self.cluster}/z1",
             "--session-ttl", str(SESSION_TTL_S), "--lock-delay", str(LOCK_DELAY_S),
             "--anti-entropy", "2", "--replica-id", f"{self.cluster}-{self.replica}"],
            self.log,
        )  # fmt: skip

        def ready() -> bool:
            try:
                return httpx.get(f"{self.url}/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
                return False

        wait_until(ready, timeout_s=30, what=f"controller {self.cluster}-{self.replica}")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait(20)
            self.proc = None

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        m = re.search(rf"^isthmus_federation_{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def snapshot(self, proxy: str = "proxy-1") -> Snapshot | None:
        r = httpx.get(f"{self.url}/v1/snapshots/{proxy}", params={"wait": "0s"}, timeout=5)
        if r.status_code != 200:
            return None
        return msgspec.json.decode(r.content, type=Snapshot)


def clusterset(snapshot: Snapshot | None, name: str) -> list[str]:
    """The endpoint addresses of the imported cluster for ``default/<name>`` port 80."""
    if snapshot is None:
        return []
    for c in snapshot.clusters:
        if c.name == f"default/{name}.clusterset:80":
            return sorted(e.address for e in c.endpoints)
    return []


def service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}  # fmt: skip


def endpoints(name: str, address: str) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [{"name": "http", "port": 8080}]}  # fmt: skip


def export(name: str) -> dict[str, Any]:
    return {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
            "metadata": {"name": name, "namespace": "default"}}  # fmt: skip


def publish(kube: KubeApiDouble, name: str, address: str = "10.9.0.1") -> None:
    kube.create(service(name))
    kube.create(endpoints(name, address))
    kube.create(export(name))


@dataclass
class Mesh:
    catalog: Catalog
    kube: dict[str, KubeApiDouble]
    ctl: dict[str, Controller]
    base: Path


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    base = tmp_path_factory.mktemp("fed")
    catalog = Catalog(free_port(), base / "catalog.json", base / "catalog.log")
    catalog.start()
    kubes: dict[str, KubeApiDouble] = {}
    ctls: dict[str, Controller] = {}
    try:
        for name in GATEWAYS:
            kube = KubeApiDouble().start()
            kubes[name] = kube
            cfg = base / f"{name}.kubeconfig"
            kube.write_kubeconfig(cfg)
            ctls[name] = Controller(name, kube, cfg, catalog, base / f"{name}.log").start()
        yield Mesh(catalog, kubes, ctls, base)
    finally:
        for c in ctls.values():
            c.stop()
        for k in kubes.values():
            k.stop()
        catalog.stop()


def test_export_reaches_another_cluster_within_2s_and_delete_removes_it(mesh: Mesh) -> None:
    east, west = mesh.ctl["east"], mesh.ctl["west"]
    mesh.kube["east"].create(service("web"))
    mesh.kube["east"].create(endpoints("web", "10.9.0.1"))
    t0 = time.monotonic()
    mesh.kube["east"].create(export("web"))
    wait_until(lambda: clusterset(west.snapshot(), "web") == [GATEWAYS["east"]],
               timeout_s=5, interval_s=0.02, what="web in west's snapshot")  # fmt: skip
    assert time.monotonic() - t0 < 2.0
    assert clusterset(east.snapshot(), "web") == []  # a cluster does not import itself
    mesh.kube["east"].delete("multicluster.x-k8s.io/v1alpha1", "ServiceExport", "web", "default")
    wait_until(lambda: clusterset(west.snapshot(), "web") == [], timeout_s=5,
               what="web gone from west's snapshot")  # fmt: skip


def test_restart_makes_zero_deregistrations(mesh: Mesh) -> None:
    east = mesh.ctl["east"]
    publish(mesh.kube["east"], "api")
    wait_until(lambda: len(mesh.catalog.entries("api-default")) == 1, what="api registered")
    before = mesh.catalog.entries("api-default")[0]
    east.stop()
    east.start()
    wait_until(lambda: east.metric("consul_reconciles") >= 2, timeout_s=20,
               what="two reconcile passes after the restart")  # fmt: skip
    assert east.metric("consul_writes_deregister_service") == 0
    assert east.metric("consul_writes_register_service") == 0
    after = mesh.catalog.entries("api-default")[0]
    assert (after["CreateIndex"], after["ModifyIndex"]) == (
        before["CreateIndex"], before["ModifyIndex"])  # fmt: skip


def test_two_clusters_exporting_one_service_do_not_overwrite(mesh: Mesh) -> None:
    publish(mesh.kube["east"], "shared", "10.9.0.5")
    publish(mesh.kube["west"], "shared", "10.9.0.6")
    north = mesh.ctl["north"]
    wait_until(lambda: clusterset(north.snapshot(), "shared")
               == sorted([GATEWAYS["east"], GATEWAYS["west"]]),
               timeout_s=10, what="both exporters in north's snapshot")  # fmt: skip
    nodes = sorted(e["Node"] for e in mesh.catalog.entries("shared-default"))
    assert nodes == ["isthmus-east", "isthmus-west"]
    # Each exporter imports only the other's endpoints: east and west learn of
    # each other's export on their own watch, so their snapshots are awaited too.
    wait_until(lambda: clusterset(mesh.ctl["east"].snapshot(), "shared") == [GATEWAYS["west"]],
               timeout_s=10, what="east imports only west's export")  # fmt: skip
    wait_until(lambda: clusterset(mesh.ctl["west"].snapshot(), "shared") == [GATEWAYS["east"]],
               timeout_s=10, what="west imports only east's export")  # fmt: skip


def test_relist_after_410_deletes_nothing(mesh: Mesh) -> None:
    east = mesh.ctl["east"]
    publish(mesh.kube["east"], "steady")
    west = mesh.ctl["west"]
    wait_until(lambda: clusterset(west.snapshot(), "steady") != [], what="steady imported")
    before_entry = mesh.catalog.entries("steady-default")[0]
    version = west.snapshot()
    assert version is not None
    mesh.kube["east"].expire_history()
    mesh.kube["east"].expire_watches()
    mesh.kube["east"].wait_for_watches(1)
    wait_until(lambda: east.metric("consul_reconciles") >= 1, what="a reconcile")
    assert east.metric("consul_writes_deregister_service") == 0
    after_entry = mesh.catalog.entries("steady-default")[0]
    assert after_entry["ModifyIndex"] == before_entry["ModifyIndex"]
    assert clusterset(west.snapshot(), "steady") == [GATEWAYS["east"]]


def test_catalog_outage_changes_no_snapshot_then_converges(mesh: Mesh) -> None:
    west = mesh.ctl["west"]
    publish(mesh.kube["east"], "before-outage")
    wait_until(lambda: clusterset(west.snapshot(), "before-outage") != [], what="imported")
    snap = west.snapshot()
    assert snap is not None
    mesh.catalog.stop()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = west.snapshot()
            assert now is not None and now.version == snap.version
            time.sleep(1.0)  # sampling the snapshot once a second through the outage
    finally:
        mesh.catalog.start()
    t0 = time.monotonic()
    publish(mesh.kube["east"], "after-outage")
    wait_until(lambda: clusterset(west.snapshot(), "after-outage") != [], timeout_s=15,
               what="convergence after the outage")  # fmt: skip
    assert time.monotonic() - t0 < 10
    assert clusterset(west.snapshot(), "before-outage") == [GATEWAYS["east"]]


def test_leader_failover_within_ttl_plus_lock_delay(mesh: Mesh) -> None:
    first = mesh.ctl["east"]
    second = Controller("east", first.kube, first.kubeconfig, mesh.catalog,
                        mesh.base / "east-b.log", replica="b").start()  # fmt: skip
    try:
        wait_until(lambda: first.metric("consul_leader") + second.metric("consul_leader") == 1,
                   what="exactly one leader")  # fmt: skip
        leader, standby = (first, second) if first.metric("consul_leader") else (second, first)
        leader.stop(signal.SIGKILL)  # no chance to release the lock
        t0 = time.monotonic()
        publish(mesh.kube["east"], "after-failover")
        wait_until(lambda: len(mesh.catalog.entries("after-failover-default")) == 1,
                   timeout_s=SESSION_TTL_S + LOCK_DELAY_S + 10, interval_s=0.1,
                   what="the standby writing as the new leader")  # fmt: skip
        took = time.monotonic() - t0
        assert took <= SESSION_TTL_S + LOCK_DELAY_S + 2, took
        assert standby.metric("consul_leader") == 1
    finally:
        second.stop()
        if first.proc is None:
            first.start()
        mesh.ctl["east"] = first
