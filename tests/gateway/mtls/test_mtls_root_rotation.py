"""Root rotation in a running mesh, with zero failed requests (issue 4, item 7).

Everything is real: ``isthmus pki`` commands make the root and the cluster CA, ``isthmus pki
serve`` signs, and two sidecars (``web`` STRICT in front of an app, ``cart`` calling it) get
their SVIDs from credential managers (``--ca-url``, 20 s certificates so that they renew every
few seconds). A client loop calls web through cart's outbound port the whole time; cart
recycles its mTLS connections to web every few requests (``maxRequestsPerConnection``), so
handshakes keep happening with whatever each side holds at that moment.

The procedure of docs/pki.md, "Rotation in a running mesh":

1. ``rotate-root stage``; re-issue the intermediate (still under root 1, bundle with both
   roots); restart the CA service; wait until both sidecars hold the two-root bundle.
2. ``rotate-root promote``; re-issue the intermediate (now under root 2); restart the CA;
   wait until both sidecars hold certificates under root 2.
3. ``rotate-root retire``; re-issue (bundle with root 2 only); restart the CA; wait until
   both sidecars hold the one-root bundle.

The loop must see no failure at all, and keep working after the old root is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.gateway.mtls.mtls_support import (
    TRUST_DOMAIN,
    Sidecar,
    peer_authentication,
    proxy_settings,
    service,
    sidecar_dir,
    start_sidecar,
)
from tests.support.backends import HttpBackend
from tests.support.gateway import free_port

REPO = Path(__file__).resolve().parents[3]
TOKENS = {"web": "web-token-0123456789abcdef", "cart": "cart-token-0123456789abcdef"}


def pki(*argv: str | Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "isthmus", "pki", *map(str, argv)],
        check=True, capture_output=True, cwd=REPO, timeout=60,
    )  # fmt: skip


class CaService:
    """``isthmus pki serve`` on a fixed port, restarted to pick up a new intermediate."""

    def __init__(self, ca: Path, tokens: Path) -> None:
        self.ca, self.tokens = ca, tokens
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "isthmus", "pki", "serve", "--ca", str(self.ca),
             "--listen", f"127.0.0.1:{self.port}", "--trust-domain", TRUST_DOMAIN,
             "--bootstrap-tokens", str(self.tokens), "--audit-log", os.devnull],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        assert "CA service for trust domain" in line, line

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class Loop(threading.Thread):
    """Requests through cart's outbound port, one after another, until stopped."""

    def __init__(self, cart: Sidecar) -> None:
        super().__init__(daemon=True)
        self.cart = cart
        self.ok = 0
        self.failures: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        url = f"http://127.0.0.1:{self.cart.outbound}/echo"
        while not self.halt.is_set():
            try:
                r = httpx.get(url, headers={"host": "web"}, timeout=10)
            except httpx.HTTPError as exc:
                self.failures.append(repr(exc))
            else:
                if r.status_code == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
            self.halt.wait(0.01)


def identity(sidecar: Sidecar) -> dict[str, object]:
    found = sidecar.process.config()["identity"]
    assert isinstance(found, dict)
    return found


def wait_for(what: str, sidecars: list[Sidecar], test: Callable[[dict[str, object]], bool],
             loop: Loop, timeout_s: float = 90.0) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while not all(test(identity(s)) for s in sidecars):
        assert time.monotonic() < deadline, f"{what}: {[identity(s) for s in sidecars]}"
        assert not loop.failures, loop.failures[:5]
        time.sleep(0.2)
    # Let the new state carry traffic for a moment (fresh handshakes both ways).
    served = loop.ok
    while loop.ok < served + 20:
        assert time.monotonic() < deadline + 30, "the loop stalled"
        time.sleep(0.05)


def test_root_rotation_without_a_failed_request(tmp_path: Path) -> None:
    root, east = tmp_path / "root", tmp_path / "east"
    pki("init-root", "--trust-domain", TRUST_DOMAIN, "--out", root)
    pki("issue-intermediate", "--root", root, "--cluster", "east", "--out", east)
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("".join(f'"{t}": {{namespace: shop, serviceAccount: {sa}}}\n'
                              for sa, t in TOKENS.items()))  # fmt: skip
    ca = CaService(east, tokens)
    ca.start()
    app = HttpBackend("web").start()
    sidecars: list[Sidecar] = []
    loop: Loop | None = None

    def identity_args(account: str) -> list[str]:
        token = tmp_path / f"{account}.token"
        token.write_text(TOKENS[account])
        return ["--ca-url", ca.url, "--ca-bundle", str(east / "root-cert.pem"),
                "--token-file", str(token), "--spiffe-id",
                f"spiffe://{TRUST_DOMAIN}/ns/shop/sa/{account}", "--cert-ttl", "20s"]  # fmt: skip

    try:
        web_cfg = sidecar_dir(
            tmp_path / "cfg-web",
            proxy_settings("shop", "web", {"app": "web"}),
            peer_authentication("strict", "shop", "STRICT"),
        )
        web = start_sidecar(web_cfg, identity_args("web"), app.port)
        sidecars.append(web)
        recycle = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec:
  host: web
  trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 3}}}
"""
        cart_cfg = sidecar_dir(
            tmp_path / "cfg-cart",
            proxy_settings("shop", "cart", {"app": "cart"}),
            service("web", "shop", web.inbound),
            recycle,
        )
        cart = start_sidecar(cart_cfg, identity_args("cart"), free_port())
        sidecars.append(cart)
        both = [web, cart]
        assert all(identity(s)["bundle_roots"] == 1 for s in both)
        assert all("root CA 1" in str(identity(s)["issuer"]) for s in both)
        loop = Loop(cart)
        loop.start()

        # 1. stage: both roots in every bundle, the old root still signs.
        pki("rotate-root", "stage", "--root", root)
        pki("issue-intermediate", "--root", root, "--cluster", "east", "--out", east)
        ca.restart()
        wait_for("two-root bundles", both, lambda i: i["bundle_roots"] == 2, loop)

        # 2. promote: the new root signs; workloads move over as they renew.
        pki("rotate-root", "promote", "--root", root)
        pki("issue-intermediate", "--root", root, "--cluster", "east", "--out", east)
        ca.restart()
        wait_for("certificates under root 2", both, lambda i: "root CA 2" in str(i["issuer"]),
                 loop)  # fmt: skip

        # 3. retire: the old root leaves every bundle.
        pki("rotate-root", "retire", "--root", root)
        pki("issue-intermediate", "--root", root, "--cluster", "east", "--out", east)
        ca.restart()
        moved = lambda i: i["bundle_roots"] == 1 and "root CA 2" in str(i["issuer"])  # noqa: E731
        wait_for("one-root bundles", both, moved, loop)

        loop.halt.set()
        loop.join(15)
        assert loop.failures == []
        assert loop.ok > 100
    finally:
        if loop is not None:
            loop.halt.set()
        for s in sidecars:
            s.stop()
        ca.stop()
        app.stop()
