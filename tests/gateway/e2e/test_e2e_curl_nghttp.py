"""Real command-line clients against a real gateway: curl, nghttp and h2load.

One gateway serves a plain HTTP listener (HTTP/1.1 and h2c with prior knowledge on the same
port) and two HTTPS listeners sharing one port with different hostnames and certificates.
curl checks the negotiated protocol (``%{http_version}``, so ALPN picked h2 or http/1.1) and
verifies the certificate against the hostname; a Python TLS client checks that each SNI name
gets its own certificate. nghttp multiplexes concurrent requests on one connection and
h2load runs a short load with every request succeeding.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from tests.gateway.e2e.helpers import (
    ConfigDir,
    backend_service_yaml,
    curl,
    http_route_yaml,
    https_listener,
    settings_yaml,
    start_gateway,
    tls_secret_yaml,
)
from tests.support.backends import HttpBackend
from tests.support.gateway import GatewayProcess, free_port

HOST_A = "a.example.test"
HOST_B = "b.example.test"


class Setup:
    def __init__(
        self, gw: GatewayProcess, http_port: int, tls_port: int, leaves: dict[str, trustme.LeafCert]
    ) -> None:
        self.gw = gw
        self.http_port = http_port
        self.tls_port = tls_port
        self.leaves = leaves


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA, http_backend: HttpBackend
) -> Iterator[Setup]:
    cfg = ConfigDir(tmp_path_factory.mktemp("curl") / "cfg")
    http_port, tls_port = free_port(), free_port()
    leaves = {HOST_A: ca.issue_cert(HOST_A), HOST_B: ca.issue_cert(HOST_B)}
    cfg.gateway(
        http_port,
        https_listener("https-a", tls_port, "cert-a", HOST_A)
        + https_listener("https-b", tls_port, "cert-b", HOST_B),
    )
    cfg.write(
        "secrets.yaml",
        tls_secret_yaml("cert-a", leaves[HOST_A])
        + "---"
        + tls_secret_yaml("cert-b", leaves[HOST_B]),
    )
    cfg.write("backend.yaml", backend_service_yaml("echo", http_backend.port))
    cfg.write("route.yaml", http_route_yaml("all", "  - backendRefs: [{name: echo, port: 80}]\n"))
    cfg.write("settings.yaml", settings_yaml(drainTimeoutSeconds=2))
    gw = start_gateway(cfg)
    yield Setup(gw, http_port, tls_port, leaves)
    gw.stop()


def _split(out: str) -> tuple[dict[str, object], str]:
    body, _, version = out.rpartition("\n")
    return json.loads(body), version


def test_curl_http11(setup: Setup) -> None:
    out = curl(
        "--http1.1", "-w", "\n%{http_version}", f"http://127.0.0.1:{setup.http_port}/echo?q=1"
    )
    body, version = _split(out.stdout)
    assert version == "1.1"
    assert body["path"] == "/echo" and body["query"] == "q=1"
    assert body["backend"] == "http-shared"


def test_curl_h2c_prior_knowledge(setup: Setup) -> None:
    out = curl(
        "--http2-prior-knowledge",
        "-w",
        "\n%{http_version}",
        "-d",
        "x" * 1000,
        f"http://127.0.0.1:{setup.http_port}/echo",
    )
    body, version = _split(out.stdout)
    assert version == "2"
    assert body["method"] == "POST" and body["body_bytes"] == 1000


@pytest.mark.parametrize("host", [HOST_A, HOST_B])
def test_curl_https_negotiates_h2(setup: Setup, ca_file: Path, host: str) -> None:
    out = curl(
        "--http2",
        "--cacert",
        str(ca_file),
        "--resolve",
        f"{host}:{setup.tls_port}:127.0.0.1",
        "-w",
        "\n%{http_version}",
        f"https://{host}:{setup.tls_port}/echo",
    )
    body, version = _split(out.stdout)
    assert version == "2"  # ALPN chose h2
    assert body["headers"]["x-forwarded-proto"] == "https"  # type: ignore[index]


def test_curl_https_http11_alpn(setup: Setup, ca_file: Path) -> None:
    out = curl(
        "--http1.1",
        "--cacert",
        str(ca_file),
        "--resolve",
        f"{HOST_A}:{setup.tls_port}:127.0.0.1",
        "-w",
        "\n%{http_version}",
        f"https://{HOST_A}:{setup.tls_port}/echo",
    )
    _, version = _split(out.stdout)
    assert version == "1.1"


@pytest.mark.parametrize("host", [HOST_A, HOST_B])
def test_certificate_matches_sni(setup: Setup, ca: trustme.CA, host: str) -> None:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", setup.tls_port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert tls.selected_alpn_protocol() == "h2"
    assert der is not None
    served = x509.load_der_x509_certificate(der)
    expected = x509.load_pem_x509_certificate(setup.leaves[host].cert_chain_pems[0].bytes())
    assert served == expected
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [host]


def test_nghttp_concurrent_streams_on_one_connection(setup: Setup) -> None:
    base = f"http://127.0.0.1:{setup.http_port}"
    urls = [f"{base}/slow?ms=400&i={i}" for i in range(5)]
    started = time.monotonic()
    out = subprocess.run(["nghttp", "-nv", *urls], capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    # One connection, five streams opened on it.
    assert out.stdout.count("] Connected") == 1
    streams = set(
        re.findall(r"send HEADERS frame <length=\d+, flags=0x\w+, stream_id=(\d+)>", out.stdout)
    )
    assert len(streams) == 5
    assert out.stdout.count(":status: 200") == 5
    # Concurrent, not one after another (which would take 5 x 0.4 s).
    assert elapsed < 1.6, f"5 slow requests took {elapsed:.2f}s"


def test_h2load_short_run_all_succeed(setup: Setup) -> None:
    out = subprocess.run(
        ["h2load", "-n", "2000", "-c", "4", "-m", "10", f"http://127.0.0.1:{setup.http_port}/echo"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    summary = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
        r"(\d+) failed, (\d+) errored",
        out.stdout,
    )
    assert summary is not None, out.stdout
    assert summary.groups() == ("2000", "2000", "2000", "2000", "0", "0"), out.stdout
    assert re.search(r"status codes: 2000 2xx", out.stdout), out.stdout


def test_h2load_over_tls_negotiates_h2(setup: Setup) -> None:
    out = subprocess.run(
        [
            "h2load",
            "-n",
            "200",
            "-c",
            "2",
            "-m",
            "5",
            f"https://127.0.0.1:{setup.tls_port}/echo",
            "-H",
            f":authority: {HOST_A}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "Application protocol: h2" in out.stdout, out.stdout
    assert re.search(r"200 succeeded, 0 failed", out.stdout), out.stdout
