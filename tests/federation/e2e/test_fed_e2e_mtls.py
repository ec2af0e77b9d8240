"""``isthmus federation run --cert --key --bundle``: the controller's API over mTLS, end to end.

Real processes: the embedded catalog, one controller reading a directory source, and an
``isthmus gateway run --control-plane https://...`` proxy with its SVID (certificates from a
test PKI). ``isthmus federation status --bundle`` reads the controller over TLS too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.federation.e2e.test_fed_e2e_clusters import ROOT, Catalog, _proc
from tests.gateway.e2e.helpers import wait_until
from tests.gateway.mtls.mtls_support import TRUST_DOMAIN, MeshPki, mtls_client_context
from tests.support.gateway import GatewayProcess, free_port, gateway_yaml


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    started = Catalog(free_port(), tmp_path / "catalog.json", tmp_path / "catalog.log")
    started.start()
    yield started
    started.stop()


def isthmus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isthmus", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=60, env=dict(os.environ))  # fmt: skip


def test_the_controller_serves_its_proxies_over_mtls(tmp_path: Path, catalog: Catalog) -> None:
    pki = MeshPki()
    controller_svid = pki.issue(tmp_path / "ctl", "isthmus-system", "isthmus-federation")
    proxy_svid = pki.issue(tmp_path / "proxy", "default", "isthmus-ingress")
    source = tmp_path / "source"
    source.mkdir()
    (source / "gateway.yaml").write_text(gateway_yaml(free_port()))
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    log = tmp_path / "controller.log"
    proc = _proc(["federation", "run", "--cluster", "east", "--catalog", catalog.url,
                  "--source", str(source), "--listen", f"127.0.0.1:{port}",
                  "--trust-domain", TRUST_DOMAIN, *controller_svid.args()], log)  # fmt: skip
    anonymous = mtls_client_context(None, controller_svid.bundle)
    gateway = GatewayProcess(
        tmp_path / "gw", extra_args=["--proxy-id", "gw-1", *proxy_svid.args()], control_plane=url
    )
    try:

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(f"{url}/ready", verify=anonymous, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout_s=30, what="the controller over TLS")
        # Probes and scrapers need no certificate; the snapshots do.
        assert httpx.get(f"{url}/metrics", verify=anonymous).status_code == 200
        refused = httpx.get(f"{url}/v1/snapshots/x?wait=0s", verify=anonymous)
        assert refused.status_code == 403
        with pytest.raises(httpx.HTTPError):  # plain HTTP gets nowhere
            httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2)

        gateway.start()
        status = None

        def applied() -> bool:
            nonlocal status
            status = isthmus("federation", "status", "--control-plane", url,
                             "--bundle", str(controller_svid.bundle), "--json")  # fmt: skip
            assert status.returncode == 0, status.stderr
            proxies = json.loads(status.stdout)["proxies"]
            return any(p["id"] == "gw-1" and p["state"] == "in sync" for p in proxies)

        wait_until(applied, timeout_s=20, what="the proxy in sync over mTLS")
        no_bundle = isthmus("federation", "status", "--control-plane", url)
        assert no_bundle.returncode == 2 and "--bundle" in no_bundle.stderr
    finally:
        gateway.stop()
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_partial_or_bad_tls_flags_are_refused(tmp_path: Path) -> None:
    pki = MeshPki()
    svid = pki.issue(tmp_path / "ctl", "isthmus-system", "isthmus-federation")
    base = ["federation", "run", "--cluster", "east", "--catalog", "http://127.0.0.1:1",
            "--source", str(tmp_path), "--trust-domain", TRUST_DOMAIN]  # fmt: skip
    partial = isthmus(*base, "--cert", str(svid.chain))
    assert partial.returncode == 2
    assert "mTLS needs --cert, --key and --bundle" in partial.stderr
    other_domain = isthmus(*base[:-1], "other.test", *svid.args())
    assert other_domain.returncode == 1
    assert "is not in trust domain other.test" in other_domain.stderr
    svid.key.write_text("not a key")
    broken = isthmus(*base, *svid.args())
    assert broken.returncode == 1 and "--cert/--key/--bundle" in broken.stderr
    no_identity = isthmus("gateway", "run", "--control-plane", "https://127.0.0.1:1")
    assert no_identity.returncode == 2 and "needs an identity for mTLS" in no_identity.stderr
