"""Run a real ``isthmus gateway run`` process for a test, and write its configuration.

:class:`GatewayProcess` starts the gateway as the operator would (the console entry point,
through ``python -m isthmus``), waits for ``/ready`` on its admin port and stops it with
SIGTERM. :func:`write_basic_config` renders the standard Gateway API YAML that most tests
need: one Gateway, one HTTPRoute, and a Service + EndpointSlice per backend.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class GatewayProcess:
    def __init__(self, config_dir: Path, *, workers: int = 1, extra_args: list[str] | None = None,
                 control_plane: str | None = None):  # fmt: skip
        # With ``control_plane`` the gateway takes its snapshots from that URL instead of
        # ``--config``; ``config_dir`` then only holds the log.
        self.config_dir = config_dir
        self.control_plane = control_plane
        self.admin_port = free_port()
        self.workers = workers
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = config_dir.parent / f"gateway-{self.admin_port}.log"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, timeout_s: float = 20.0) -> GatewayProcess:
        """Start and wait for ``/ready``. ``free_port`` can race with other processes on a
        busy machine: when the admin port was taken meanwhile, retry on a fresh one."""
        for _ in range(3):
            try:
                return self._start(timeout_s)
            except RuntimeError as exc:
                admin_taken = f"'127.0.0.1', {self.admin_port}): address already in use"
                if admin_taken not in str(exc):
                    raise
                self.admin_port = free_port()
        return self._start(timeout_s)

    def _start(self, timeout_s: float) -> GatewayProcess:
        env = dict(os.environ)
        env.setdefault("ISTHMUS_LOG_LEVEL", "WARNING")
        # ISTHMUS_TEST_TREE points the gateway at another build of the same sources, such as
        # the mypyc-compiled tree of `make compiled`, so the same tests can run against it.
        tree = os.environ.get("ISTHMUS_TEST_TREE")
        if tree:
            env["PYTHONPATH"] = os.path.abspath(tree)
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "isthmus", "gateway", "run", "--role", "ingress",
             *(["--control-plane", self.control_plane] if self.control_plane
               else ["--config", str(self.config_dir)]),
             "--admin", f"127.0.0.1:{self.admin_port}",
             "--workers", str(self.workers), *self.extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=os.path.abspath(tree) if tree else None,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if httpx.get(f"{self.admin_url}/ready", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway not ready in {timeout_s}s:\n{self.logs()}")

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def config(self) -> dict[str, object]:
        data: dict[str, object] = httpx.get(f"{self.admin_url}/config", timeout=5).json()
        return data

    def metrics(self) -> str:
        return httpx.get(f"{self.admin_url}/metrics", timeout=5).text

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_version_change(self, old: str, timeout_s: float = 10.0) -> str:
        """Wait until /config reports a version other than ``old``; returns it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            v = self.config().get("version")
            if isinstance(v, str) and v != old:
                return v
            time.sleep(0.05)
        raise TimeoutError(f"config version still {old}")

    def stop(self, timeout_s: float = 15.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def service_yaml(name: str, port: int, target_port: int, *, app_protocol: str | None = None,
                 namespace: str = "default", address: str = "127.0.0.1") -> str:  # fmt: skip
    app = f", appProtocol: {app_protocol}" if app_protocol else ""
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  ports: [{{name: p{port}, port: {port}, targetPort: {target_port}{app}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: {namespace}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
endpoints: [{{addresses: [{address}], conditions: {{ready: true}}}}]
ports: [{{name: p{port}, port: {target_port}{app}}}]
"""


def gateway_yaml(http_port: int, *, name: str = "gw", listeners_extra: str = "") -> str:
    return f"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  gatewayClassName: isthmus
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
  - {{name: http, port: {http_port}, protocol: HTTP}}
{listeners_extra}"""


def simple_route_yaml(
    backend: str, port: int = 80, *, name: str = "r", extra_spec: str = ""
) -> str:
    return f"""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - backendRefs: [{{name: {backend}, port: {port}}}]
{extra_spec}"""


def write_basic_config(directory: Path, http_port: int, backend_port: int, *,
                       app_protocol: str | None = None, settings: str = "") -> Path:  # fmt: skip
    """One HTTP listener on ``http_port`` routing everything to a backend on ``backend_port``.
    ``settings`` is an optional ProxySettings spec body (YAML, indented two spaces)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "gateway.yaml").write_text(gateway_yaml(http_port))
    (directory / "route.yaml").write_text(simple_route_yaml("backend"))
    (directory / "backend.yaml").write_text(
        service_yaml("backend", 80, backend_port, app_protocol=app_protocol)
    )
    if settings:
        (directory / "settings.yaml").write_text(
            "apiVersion: isthmus.dev/v1alpha1\nkind: ProxySettings\n"
            f"metadata: {{name: proxy, namespace: default}}\nspec:\n{settings}"
        )
    return directory
