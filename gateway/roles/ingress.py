"""The ingress role: public listeners from Gateway resources, over the shared engine.

It only composes: a snapshot source, the supervisor and its workers, and the identity the
metrics report as. The east-west and sidecar roles are other presets of the same pieces.
"""

from __future__ import annotations

from gateway.process.control_plane import ControlPlaneSource
from gateway.process.credentials import CredentialSource
from gateway.process.sources import DirectorySource
from gateway.roles.serving import serve


def run_ingress(
    config_dir: str,
    *,
    admin: tuple[str, int],
    workers: int,
    workload: str = "isthmus-ingress",
    namespace: str = "default",
    cluster: str = "Kubernetes",
    watch: bool = True,
    credentials: CredentialSource | None = None,
) -> int:
    """Serve the Gateway API YAML in ``config_dir`` until SIGTERM. Returns an exit code.
    ``credentials``: the proxy's own identity, for ISTIO_MUTUAL clusters (optional)."""
    return serve(DirectorySource(config_dir), "ingress", admin=admin, workers=workers,
                 workload=workload, namespace=namespace, cluster=cluster,
                 credentials=credentials, watch=watch)  # fmt: skip


def run_ingress_control_plane(
    url: str,
    *,
    proxy_id: str,
    cache: str | None,
    admin: tuple[str, int],
    workers: int,
    workload: str = "isthmus-ingress",
    namespace: str = "default",
    cluster: str = "Kubernetes",
    credentials: CredentialSource | None = None,
    role: str = "ingress",
) -> int:
    """Serve the snapshots the federation controller at ``url`` computes for ``proxy_id``
    in ``role`` (``ingress``, or ``eastwest``: see ``gateway.roles.eastwest``),
    caching the last applied one in ``cache``, until SIGTERM. Returns an exit code. With
    ``credentials`` the proxy has an identity: it polls an ``https://`` controller over mTLS
    with it, and uses it for mTLS in the data plane."""
    source = ControlPlaneSource(
        url, proxy_id, cache_path=cache, role=role, namespace=namespace, workload=workload
    )
    return serve(source, role, admin=admin, workers=workers, workload=workload,
                 namespace=namespace, cluster=cluster, credentials=credentials)  # fmt: skip
