"""The ingress role: public listeners from Gateway resources, over the shared engine.

It only composes: a snapshot source, the supervisor and its workers, and the identity the
metrics report as. The east-west and sidecar roles are other presets of the same pieces.
"""

from __future__ import annotations

from gateway.process.sources import DirectorySource
from gateway.process.supervisor import SupervisorConfig, run
from gateway.telemetry.render import ProxyIdentity


def run_ingress(
    config_dir: str,
    *,
    admin: tuple[str, int],
    workers: int,
    workload: str = "isthmus-ingress",
    namespace: str = "default",
    cluster: str = "Kubernetes",
    watch: bool = True,
) -> int:
    """Serve the Gateway API YAML in ``config_dir`` until SIGTERM. Returns an exit code."""
    config = SupervisorConfig(
        source=DirectorySource(config_dir),
        workers=workers,
        admin=admin,
        identity=ProxyIdentity(workload=workload, namespace=namespace, cluster=cluster),
        watch=watch,
        role="ingress",
    )
    return run(config)
