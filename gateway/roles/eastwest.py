"""The east-west role: the gateway other clusters' proxies reach this cluster's services through.

It routes on the TLS SNI of each incoming connection, in Istio's AUTO_PASSTHROUGH format
(``outbound_.<port>_._.<name>.<namespace>.svc.<domain>``), and never decrypts: the mutual
TLS session runs from the calling proxy to the destination's sidecar (DESIGN.md §1). Its
snapshot, one passthrough port whose routes are the services this cluster exports, comes
from the federation controller (``federation.snapshots.eastwest``), so the role runs only
with ``--control-plane``. The engine is the ingress's: the same supervisor, workers and
``gateway.transport.passthrough`` connections.
"""

from __future__ import annotations

from gateway.process.credentials import CredentialSource
from gateway.roles.ingress import run_ingress_control_plane

WORKLOAD = "isthmus-eastwest"


def run_eastwest(
    url: str,
    *,
    proxy_id: str,
    cache: str | None,
    admin: tuple[str, int],
    workers: int,
    workload: str = WORKLOAD,
    namespace: str = "default",
    cluster: str = "Kubernetes",
    credentials: CredentialSource | None = None,
) -> int:
    """Serve the east-west snapshots of the controller at ``url`` until SIGTERM. ``credentials``
    are needed only to poll an ``https://`` controller (the data plane does not terminate
    TLS)."""
    return run_ingress_control_plane(
        url,
        proxy_id=proxy_id,
        cache=cache,
        admin=admin,
        workers=workers,
        workload=workload,
        namespace=namespace,
        cluster=cluster,
        credentials=credentials,
        role="eastwest",
    )
