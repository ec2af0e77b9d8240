"""What every role does last: run the supervisor and its workers over a snapshot source.

Used by ``gateway.roles.ingress``, ``gateway.roles.eastwest`` and ``gateway.roles.sidecar``,
which differ only by where their snapshots come from (a directory, compiled for the role, or
the federation controller) and by the role's name in ``/config`` and the metrics.
"""

from __future__ import annotations

from gateway.process.credentials import CredentialSource
from gateway.process.sources import SnapshotSource
from gateway.process.supervisor import SupervisorConfig, run
from gateway.telemetry.render import ProxyIdentity


def serve(
    source: SnapshotSource,
    role: str,
    *,
    admin: tuple[str, int],
    workers: int,
    workload: str,
    namespace: str,
    cluster: str,
    credentials: CredentialSource | None,
    watch: bool = True,
) -> int:
    """Serve ``source``'s snapshots as ``role`` until SIGTERM; returns the exit code."""
    config = SupervisorConfig(
        source=source,
        workers=workers,
        admin=admin,
        identity=ProxyIdentity(workload=workload, namespace=namespace, cluster=cluster),
        watch=watch,
        role=role,
        credentials=credentials,
    )
    return run(config)
