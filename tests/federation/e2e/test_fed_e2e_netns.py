"""Three clusters in their own network namespaces, one router between them, and a cut link.

Each cluster (``tests.support.netns``) runs, inside its namespace, its federation controller
(directory source), its east-west gateway on its own address ``10.77.k.2:15443``, and: for
``east`` the ingress; for ``west`` and ``north`` the app ``hello`` behind its sidecar, both
exporting it. The embedded catalog runs in the router's namespace, which every cluster reaches
only over its link. Nothing is shared but what crosses the router: the clusters' processes
all use the same loopback ports, each on its own loopback.

A request to east's ingress for ``hello`` (a Service east does not have) goes out of east's
namespace with mTLS and the service's SNI, through the router, to west's or north's east-west
gateway and on to that cluster's sidecar. Cutting west's link at the router cuts west off from
the catalog too: once its heartbeat check has expired, east counts west's export as not ready
and every request goes to north, at once (until then the route's per-try timeout and retry
carry the requests that were sent to west). Restoring the link brings west back.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.mtls.mtls_support import TRUST_DOMAIN, MeshPki
from tests.support import netns

CLUSTERS = ["east", "west", "north"]
CONTROLLER = "127.0.0.1:15010"
EASTWEST_PORT = 15443
INGRESS_PORT = 8080
APP_PORT = 8000
INBOUND, OUTBOUND = 15006, 15001
HEARTBEAT_TTL_S = 4

_UNAVAILABLE = netns.available()
pytestmark = pytest.mark.skipif(_UNAVAILABLE is not None, reason=str(_UNAVAILABLE))


def _hello_yaml() -> str:
    return f"""apiVersion: v1
kind: Service
metadata: {{name: hello, namespace: default}}
spec:
  ports: [{{name: http, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: hello-1, namespace: default, labels: {{kubernetes.io/service-name: hello}}}}
addressType: IPv4
endpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]
ports: [{{name: http, port: {INBOUND}}}]
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {{name: hello, namespace: default}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: hello, namespace: default}}
spec:
  selector: {{matchLabels: {{app: hello}}}}
  mtls: {{mode: STRICT}}
"""


def _ingress_yaml() -> str:
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: ingress, namespace: default}}
spec:
  gatewayClassName: isthmus
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners: [{{name: http, port: {INGRESS_PORT}, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: hello, namespace: default}}
spec:
  parentRefs: [{{name: ingress}}]
  rules:
  - backendRefs: [{{name: hello, port: 80}}]
    timeouts: {{backendRequest: 1s}}
    retry: {{attempts: 2, backoff: 1ms}}
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[netns.Topology]:
    base = tmp_path_factory.mktemp("netns")
    pki = MeshPki()
    topo = netns.Topology(CLUSTERS)
    try:
        topo.create()
        topo.spawn("router", ["-m", "isthmus", "catalog", "serve", "--listen", "0.0.0.0:8500"],
                   base / "catalog.log")  # fmt: skip
        for cluster in CLUSTERS:
            source = base / cluster
            source.mkdir()
            log = base / f"{cluster}-%s.log"
            (source / "objects.yaml").write_text(
                _ingress_yaml() if cluster == "east" else _hello_yaml()
            )
            control = f"http://{CONTROLLER}"
            topo.spawn(cluster, [
                "-m", "isthmus", "federation", "run", "--cluster", cluster,
                "--catalog", f"http://{topo.router_address(cluster)}:8500",
                "--source", str(source), "--listen", CONTROLLER,
                "--gateway", f"{topo.address(cluster)}:{EASTWEST_PORT}",
                "--locality", f"{cluster}/z1", "--trust-domain", TRUST_DOMAIN,
                "--heartbeat-ttl", str(HEARTBEAT_TTL_S),
            ], Path(str(log) % "controller"))  # fmt: skip
            topo.spawn(cluster, [
                "-m", "isthmus", "gateway", "run", "--role", "eastwest", "--control-plane",
                control, "--proxy-id", f"eastwest-{cluster}", "--admin", "127.0.0.1:15000",
            ], Path(str(log) % "eastwest"))  # fmt: skip
            if cluster == "east":
                svid = pki.issue(base / "svid-ingress", "default", "isthmus-ingress")
                topo.spawn(cluster, [
                    "-m", "isthmus", "gateway", "run", "--control-plane", control,
                    "--proxy-id", "ingress-east", "--admin", "127.0.0.1:15003", *svid.args(),
                ], Path(str(log) % "ingress"))  # fmt: skip
            else:
                topo.spawn(cluster, ["-m", "isthmus.backends", f"hello-{cluster}", "127.0.0.1",
                                     str(APP_PORT)], Path(str(log) % "app"))  # fmt: skip
                svid = pki.issue(base / f"svid-{cluster}", "default", "hello")
                topo.spawn(cluster, [
                    "-m", "isthmus", "gateway", "run", "--role", "sidecar",
                    "--control-plane", control, "--proxy-id", f"hello-{cluster}",
                    "--workload", "hello", "--label", "app=hello",
                    "--inbound-port", str(INBOUND), "--inbound-address", "127.0.0.1",
                    "--app-port", str(APP_PORT), "--outbound-port", str(OUTBOUND),
                    "--admin", "127.0.0.1:15002", *svid.args(),
                ], Path(str(log) % "sidecar"))  # fmt: skip
        yield topo
    finally:
        topo.destroy()
        _dump_logs_if_failed(base)


def _dump_logs_if_failed(base: Path) -> None:
    for log in sorted(base.glob("*.log")):
        text = log.read_text(errors="replace")
        if "Traceback" in text:
            print(f"--- {log.name}\n{text[-3000:]}")


def backends(topo: netns.Topology, n: int) -> list[str | None]:
    """The ``backend`` of ``n`` requests to east's ingress (None for a failed one)."""
    out: list[str | None] = []
    for _ in range(n):
        status, body = topo.http("east", f"http://127.0.0.1:{INGRESS_PORT}/")
        out.append(json.loads(body)["backend"] if status == 200 else None)
    return out


def wait_for(what: str, probe: object, timeout_s: float = 90.0) -> None:
    assert callable(probe)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def test_east_reaches_both_other_clusters_through_the_router(mesh: netns.Topology) -> None:
    wait_for("east's ingress reaching hello in both other clusters",
             lambda: {"hello-west", "hello-north"} <= set(backends(mesh, 6)))  # fmt: skip
    seen = backends(mesh, 10)
    assert None not in seen
    # The caller the destination's sidecar saw was east's ingress: the SNI-routed session ran
    # end to end across the namespaces.
    status, body = mesh.http("west", "http://127.0.0.1:15002/config")
    assert status == 200 and '"mtls":"STRICT"' in body


def test_a_cut_link_fails_over_to_the_other_cluster_and_comes_back(
    mesh: netns.Topology,
) -> None:
    wait_for(
        "both clusters serving", lambda: {"hello-west", "hello-north"} <= set(backends(mesh, 6))
    )
    mesh.cut("west")
    try:
        # Right after the cut, a request sent to west may hang until its per-try timeout and
        # be retried on north. Once west's heartbeat check has expired (it cannot reach the
        # catalog any more), east counts west's export as not ready and sends it nothing.
        cut_at = time.monotonic()
        wait_for("every request answered by north, at once",
                 lambda: backends_timed(mesh, 8) == ["hello-north"] * 8, timeout_s=60)  # fmt: skip
        assert time.monotonic() - cut_at < HEARTBEAT_TTL_S + 30
    finally:
        mesh.restore("west")
    wait_for("west serving again", lambda: "hello-west" in backends(mesh, 6))


def backends_timed(topo: netns.Topology, n: int, limit_s: float = 0.5) -> list[str | None]:
    """Like :func:`backends`, counting an answer slower than ``limit_s`` as failed."""
    out: list[str | None] = []
    for _ in range(n):
        started = time.monotonic()
        status, body = topo.http("east", f"http://127.0.0.1:{INGRESS_PORT}/")
        fast = time.monotonic() - started < limit_s
        out.append(json.loads(body)["backend"] if status == 200 and fast else None)
    return out


def test_namespaces_are_isolated(mesh: netns.Topology) -> None:
    # east's own loopback has no app: only the router links the clusters.
    status, _ = mesh.http("east", f"http://127.0.0.1:{APP_PORT}/")
    assert status == 0
    status, _ = mesh.http("west", f"http://127.0.0.1:{APP_PORT}/")
    assert status == 200
    done = subprocess.run(["ip", "netns", "exec", mesh.ns("east"), "ip", "route"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert f"default via {mesh.router_address('east')}" in done.stdout
