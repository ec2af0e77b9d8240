"""Cross-cluster traffic through the east-west gateway, end to end, with real processes.

Two clusters share one embedded catalog; each runs ``isthmus federation run`` over a
directory source. ``west`` runs its app behind a sidecar (``isthmus gateway run --role
sidecar``, SVID ``default/sa/api``, STRICT mTLS, an AuthorizationPolicy that admits only
east's ingress) and an ``isthmus gateway run --role eastwest`` subscribed to its controller,
listening where west's Consul node says its gateway is. ``east`` runs an ingress subscribed to
its controller, with an HTTPRoute to ``api``, a Service only west has.

A request to east's ingress therefore goes: ingress (ISTIO_MUTUAL with east's SVID and the
SNI ``outbound_.80_._.api.default.svc.cluster.local``) → west's east-west gateway (routes on
the SNI, does not decrypt) → west's sidecar (checks east's identity) → the app. The sidecar's
access log shows the ingress's SPIFFE ID, which it can only have seen if the TLS session ran
end to end through the gateway.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.federation.e2e.test_fed_e2e_clusters import Catalog, _proc
from tests.gateway.e2e.helpers import wait_until
from tests.gateway.mtls.mtls_support import (
    TRUST_DOMAIN,
    MeshPki,
    Svid,
    allow_principals,
    mtls_client_context,
    peer_authentication,
    proxy_settings,
    service,
)
from tests.support.backends import HttpBackend
from tests.support.gateway import GatewayProcess, free_port, gateway_yaml

INGRESS_ID = f"spiffe://{TRUST_DOMAIN}/ns/default/sa/isthmus-ingress"
API_SNI = "outbound_.80_._.api.default.svc.cluster.local"
HOST = "api.default.svc.clusterset.local"

SERVICE_EXPORT = """
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {{name: {name}, namespace: default}}
"""

ROUTE = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: to-api, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [{HOST}]
  rules:
  - backendRefs: [{{name: api, port: 80}}]
"""


@dataclass
class Clusters:
    ingress_port: int
    eastwest_port: int
    web_outbound: int
    west_source: Path
    access_log: Path
    eastwest: GatewayProcess
    ingress: GatewayProcess
    client: ssl.SSLContext  # east's ingress SVID, trusting the mesh root


def _controller(
    cluster: str, catalog: Catalog, source: Path, gateway_port: int, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = _proc(["federation", "run", "--cluster", cluster, "--catalog", catalog.url,
                  "--source", str(source), "--listen", f"127.0.0.1:{port}",
                  "--gateway", f"127.0.0.1:{gateway_port}", "--locality", f"{cluster}/z1",
                  "--trust-domain", TRUST_DOMAIN], log)  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout_s=30, what=f"the {cluster} controller")
    return proc, url


def _sidecar(base: Path, url: str, svid: Svid, workload: str, inbound: int, app: int,
             outbound: int) -> GatewayProcess:  # fmt: skip
    """``isthmus gateway run --role sidecar --control-plane``: its snapshot comes from the
    controller, compiled for what it says of itself."""
    args = ["--role", "sidecar", "--proxy-id", f"{workload}-1", "--namespace", "default",
            "--workload", workload, "--label", f"app={workload}",
            "--inbound-port", str(inbound), "--inbound-address", "127.0.0.1",
            "--app-port", str(app), "--outbound-port", str(outbound), *svid.args()]  # fmt: skip
    return GatewayProcess(base / workload, control_plane=url, extra_args=args)


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clusters]:
    base = tmp_path_factory.mktemp("eastwest")
    pki = MeshPki()
    catalog = Catalog(free_port(), base / "catalog.json", base / "catalog.log")
    catalog.start()
    procs: list[subprocess.Popen[bytes]] = []
    gateways: list[GatewayProcess] = []
    api_app, web_app = HttpBackend("api-west").start(), HttpBackend("web-east").start()
    try:
        # West: api behind its sidecar; STRICT mTLS and an AuthorizationPolicy that admits
        # east's ingress and east's web only.
        access_log = base / "west-access.log"
        api_inbound, eastwest_port = free_port(), free_port()
        west_source = base / "west"
        west_source.mkdir()
        (west_source / "api.yaml").write_text(service("api", "default", api_inbound))
        (west_source / "api-export.yaml").write_text(SERVICE_EXPORT.format(name="api"))
        # A Service west does not export: the east-west gateway must not route to it.
        (west_source / "internal.yaml").write_text(service("internal", "default", api_app.port))
        logging = f"{{accessLog: {{path: {access_log}}}}}"
        (west_source / "policy.yaml").write_text("---".join([
            proxy_settings("default", "api", {}, telemetry=logging),
            peer_authentication("api", "default", "STRICT", selector="app: api"),
            allow_principals("east-only", "default",
                             [f"{TRUST_DOMAIN}/ns/default/sa/isthmus-ingress",
                              f"{TRUST_DOMAIN}/ns/default/sa/web"]),
        ]))  # fmt: skip
        west, west_url = _controller("west", catalog, west_source, eastwest_port,
                                     base / "west.log")  # fmt: skip
        procs.append(west)
        api_svid = pki.issue(base / "api", "default", "api")
        gateways.append(_sidecar(base, west_url, api_svid, "api", api_inbound, api_app.port,
                                 free_port()).start())  # fmt: skip
        eastwest_args = ["--role", "eastwest", "--proxy-id", "ew-west"]
        eastwest = GatewayProcess(base / "ew", control_plane=west_url, extra_args=eastwest_args)
        gateways.append(eastwest.start())

        # East: an ingress routing the clusterset host to api, and web's sidecar.
        ingress_port, web_outbound = free_port(), free_port()
        east_source = base / "east"
        east_source.mkdir()
        (east_source / "gateway.yaml").write_text(gateway_yaml(ingress_port) + "---" + ROUTE)
        east, east_url = _controller("east", catalog, east_source, free_port(), base / "east.log")
        procs.append(east)
        ingress_svid = pki.issue(base / "ingress", "default", "isthmus-ingress")
        ingress_args = ["--proxy-id", "ingress-east", *ingress_svid.args()]
        ingress = GatewayProcess(base / "in", control_plane=east_url, extra_args=ingress_args)
        gateways.append(ingress.start())
        web_svid = pki.issue(base / "web", "default", "web")
        gateways.append(_sidecar(base, east_url, web_svid, "web", free_port(), web_app.port,
                                 web_outbound).start())  # fmt: skip
        client = mtls_client_context(ingress_svid, ingress_svid.bundle)
        yield Clusters(ingress_port, eastwest_port, web_outbound, west_source, access_log,
                       eastwest, ingress, client)  # fmt: skip
    finally:
        for gw in gateways:
            gw.stop()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        api_app.stop()
        web_app.stop()
        catalog.stop()


def get(c: Clusters, path: str = "/echo") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{c.ingress_port}{path}", headers={"host": HOST},
                     timeout=10)  # fmt: skip


def reaches_api(c: Clusters) -> bool:
    try:
        return get(c).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_request_crosses_clusters_through_the_eastwest_gateway(clusters: Clusters) -> None:
    wait_until(lambda: reaches_api(clusters), timeout_s=30, what="east's ingress reaching api")
    r = get(clusters, "/echo?crossed")
    assert r.status_code == 200
    assert r.json()["backend"] == "api-west"
    # West's sidecar saw east's ingress as its TLS peer: the gateway in between did not
    # terminate the session (it holds no certificate at all).
    entry = _access_entry(clusters.access_log, "crossed")
    assert entry["downstream_peer_principal"] == INGRESS_ID


def test_a_sidecar_reaches_the_other_cluster_by_its_clusterset_name(clusters: Clusters) -> None:
    # web's sidecar (east) has no config of its own: its controller compiled the outbound
    # route for api.default.svc.clusterset.local and the mTLS cluster behind it.
    def call() -> httpx.Response | None:
        try:
            r = httpx.get(f"http://127.0.0.1:{clusters.web_outbound}/echo?from-web",
                          headers={"host": HOST}, timeout=10)  # fmt: skip
        except httpx.HTTPError:
            return None
        return r if r.status_code == 200 else None

    r = wait_until(call, timeout_s=30, what="web reaching api across clusters")
    assert r.json()["backend"] == "api-west"
    entry = _access_entry(clusters.access_log, "from-web")
    assert entry["downstream_peer_principal"] == f"spiffe://{TRUST_DOMAIN}/ns/default/sa/web"


def test_the_gateway_routes_only_exported_services(clusters: Clusters) -> None:
    wait_until(lambda: reaches_api(clusters), timeout_s=30, what="east's ingress reaching api")
    # A ClientHello for a Service west does not export, and one for no Service at all: the
    # gateway closes the connection without answering.
    for sni in ("outbound_.80_._.internal.default.svc.cluster.local", "example.com"):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            _handshake(clusters, sni)
    # For the exported one the TLS server answering is api's sidecar, behind the gateway.
    peer = _handshake(clusters, API_SNI)
    assert peer == f"spiffe://{TRUST_DOMAIN}/ns/default/sa/api"
    assert get(clusters).status_code == 200  # the refusals cost the gateway nothing


def test_unexporting_removes_the_route_and_exporting_brings_it_back(clusters: Clusters) -> None:
    wait_until(lambda: reaches_api(clusters), timeout_s=30, what="east's ingress reaching api")
    export = clusters.west_source / "api-export.yaml"
    text = export.read_text()
    export.unlink()  # the Service stays, its ServiceExport goes

    def refused() -> bool:
        try:
            _handshake(clusters, API_SNI)
        except (ssl.SSLError, ConnectionError, OSError):
            return True
        return False

    wait_until(refused, timeout_s=20, what="the gateway dropping api's route")
    wait_until(lambda: not reaches_api(clusters), timeout_s=20, what="east losing api")
    export.write_text(text)
    wait_until(lambda: reaches_api(clusters), timeout_s=30, what="api back in east")


def _handshake(c: Clusters, sni: str) -> str:
    """Open mTLS to the east-west gateway as east's ingress, with ``sni``, and return the
    URI SAN of the (verified) server certificate."""
    with (
        socket.create_connection(("127.0.0.1", c.eastwest_port), timeout=5) as raw,
        c.client.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return str(uris.get_values_for_type(x509.UniformResourceIdentifier)[0])


def _access_entry(log: Path, marker: str) -> dict[str, object]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if log.exists():
            for line in reversed(log.read_text().splitlines()):
                if marker in line:
                    entry: dict[str, object] = json.loads(line)
                    return entry
        time.sleep(0.05)
    raise AssertionError(f"no access log entry with {marker!r} in {log}")


def test_the_eastwest_role_needs_a_control_plane(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from isthmus.cli import main

    assert main(["gateway", "run", "--role", "eastwest", "--config", str(tmp_path)]) == 2
    assert "needs --control-plane" in capsys.readouterr().err
