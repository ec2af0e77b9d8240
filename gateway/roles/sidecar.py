"""The sidecar role: an inbound and an outbound listener next to one app, over the one engine.

It only composes: a directory source whose snapshots come from the sidecar compile step
(``gateway.config.sidecar``), or the federation controller (which compiles the same step for
the workload, namespace, labels and ports the sidecar reports), the workload's identity
(``gateway.process.credentials``; required, since every mesh hop is mTLS), the supervisor
and its workers. Interception is explicit: the app listens on ``app_port`` and calls other
Services through ``outbound_port``; peers reach it on ``inbound_port``. (Transparent
interception with iptables is the injector's business.)
"""

from __future__ import annotations

import os

from gateway.config.loader import load_directory
from gateway.config.sidecar import SidecarPorts, compile_sidecar
from gateway.config.snapshot import Snapshot
from gateway.process.control_plane import ControlPlaneSource
from gateway.process.credentials import CredentialSource
from gateway.process.sources import DirectorySource
from gateway.roles.serving import serve


class SidecarSource(DirectorySource):
    """A configuration directory compiled for a sidecar with ``ports``."""

    def __init__(self, path: str | os.PathLike[str], ports: SidecarPorts) -> None:
        super().__init__(path)
        self.ports = ports
        self.description = f"directory {self.path} (sidecar)"

    def load(self) -> Snapshot:
        stamp = self._scan()
        snapshot = compile_sidecar(load_directory(self.path), self.ports)
        self._fingerprint = stamp
        return snapshot


def run_sidecar(
    config_dir: str,
    ports: SidecarPorts,
    credentials: CredentialSource,
    *,
    admin: tuple[str, int],
    workers: int,
    workload: str = "isthmus-sidecar",
    namespace: str = "default",
    cluster: str = "Kubernetes",
    watch: bool = True,
) -> int:
    """Serve as the sidecar of the app on ``ports.app_port`` until SIGTERM; an exit code."""
    return serve(SidecarSource(config_dir, ports), "sidecar", admin=admin, workers=workers,
                 workload=workload, namespace=namespace, cluster=cluster,
                 credentials=credentials, watch=watch)  # fmt: skip


def run_sidecar_control_plane(
    url: str,
    ports: SidecarPorts,
    credentials: CredentialSource,
    *,
    proxy_id: str,
    cache: str | None,
    admin: tuple[str, int],
    workers: int,
    workload: str = "isthmus-sidecar",
    namespace: str = "default",
    labels: tuple[tuple[str, str], ...] = (),
    cluster: str = "Kubernetes",
) -> int:
    """Serve as the sidecar of the app on ``ports.app_port`` with the snapshots the federation
    controller at ``url`` compiles for it, until SIGTERM; an exit code."""
    sidecar = (
        f"{_host(ports.inbound_address)}:{ports.inbound_port}",
        f"{_host(ports.app_address)}:{ports.app_port}",
        f"{_host(ports.outbound_address)}:{ports.outbound_port}",
    )
    source = ControlPlaneSource(
        url,
        proxy_id,
        cache_path=cache,
        role="sidecar",
        namespace=namespace,
        workload=workload,
        labels=labels,
        sidecar=sidecar,
    )
    return serve(source, "sidecar", admin=admin, workers=workers, workload=workload,
                 namespace=namespace, cluster=cluster, credentials=credentials)  # fmt: skip


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
