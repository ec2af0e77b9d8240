"""Network namespaces for multi-cluster tests: one namespace per cluster, joined by a router.

:class:`Topology` makes, with ``ip`` (iproute2; root needed, as in CI), a router namespace
and one namespace per cluster. Cluster ``k`` (from 1) gets the subnet ``10.77.k.0/24``: its
end of a veth pair is ``10.77.k.2`` with a default route to the router's end ``10.77.k.1``;
the router forwards between all of them. So each cluster has its own loopback (its
processes may use the same ports as the other clusters') and reaches the others only through
the router, where a test can cut a cluster's link (:meth:`Topology.cut`) and restore it.

Processes run inside a namespace with ``ip netns exec`` (:meth:`Topology.spawn`), and a test
talks to them with curl run there too (:meth:`Topology.http`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def available() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs the suite as root)"
    if shutil.which("ip") is None or shutil.which("curl") is None:
        return "network namespace tests need iproute2 and curl"
    probe = f"isthprobe{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Topology:
    clusters: list[str]
    prefix: str = field(default_factory=lambda: f"isth{os.getpid() % 100000}")
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def router(self) -> str:
        return f"{self.prefix}-router"

    def ns(self, cluster: str) -> str:
        return f"{self.prefix}-{cluster}"

    def address(self, cluster: str) -> str:
        """The cluster's address, as the other clusters reach it."""
        return f"10.77.{self.clusters.index(cluster) + 1}.2"

    def router_address(self, cluster: str) -> str:
        """The router's address on the cluster's link (where shared services listen)."""
        return f"10.77.{self.clusters.index(cluster) + 1}.1"

    def _link(self, cluster: str) -> str:
        return f"r{self.clusters.index(cluster) + 1}-{self.prefix}"[:15]

    def create(self) -> Topology:
        _ip("netns", "add", self.router)
        _ip("-n", self.router, "link", "set", "lo", "up")
        subprocess.run(["ip", "netns", "exec", self.router, "sysctl", "-qw",
                        "net.ipv4.ip_forward=1"], check=True)  # fmt: skip
        for k, cluster in enumerate(self.clusters, start=1):
            ns, link = self.ns(cluster), self._link(cluster)
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("link", "add", link, "netns", self.router, "type", "veth",
                "peer", "name", "eth0", "netns", ns)  # fmt: skip
            _ip("-n", self.router, "addr", "add", f"10.77.{k}.1/24", "dev", link)
            _ip("-n", self.router, "link", "set", link, "up")
            _ip("-n", ns, "addr", "add", f"10.77.{k}.2/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "route", "add", "default", "via", f"10.77.{k}.1")
        return self

    def cut(self, cluster: str) -> None:
        """Take the cluster's link down at the router: the others get "unreachable"."""
        _ip("-n", self.router, "link", "set", self._link(cluster), "down")

    def restore(self, cluster: str) -> None:
        _ip("-n", self.router, "link", "set", self._link(cluster), "up")
        k = self.clusters.index(cluster) + 1
        _ip("-n", self.ns(cluster), "route", "replace", "default", "via", f"10.77.{k}.1")

    def spawn(self, where: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        """Start ``python argv...`` in the namespace ``where`` (a cluster, or the router)."""
        ns = self.router if where == "router" else self.ns(where)
        out = log.open("ab")
        try:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, *argv],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED="1", ISTHMUS_LOG_LEVEL="WARNING"),
            )  # fmt: skip
        finally:
            out.close()
        self.procs.append(proc)
        return proc

    def http(self, cluster: str, url: str, *headers: str) -> tuple[int, str]:
        """``GET url`` with curl inside the cluster's namespace: (status, body); status 0
        when nothing answered."""
        args = ["ip", "netns", "exec", self.ns(cluster), "curl", "-s", "-m", "5",
                "-w", "\n%{http_code}", *(x for h in headers for x in ("-H", h)), url]  # fmt: skip
        done = subprocess.run(args, capture_output=True, text=True, timeout=15)
        body, _, code = done.stdout.rpartition("\n")
        return (int(code) if code.isdigit() else 0), body

    def destroy(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for ns in [*(self.ns(c) for c in self.clusters), self.router]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
