"""Consul sync: publish this cluster's exports, read every other cluster's, elect a leader.

Talks to Consul only through py-consul's asyncio client (``consul.aio.Consul``), following
``shared/reference/consul-api.md``. Modules, one concept each:

- ``records``: the node's layout and the diff (sans-IO); ``blocking``: index/rate-limit/
  backoff rules (sans-IO); ``liveness``: remote heartbeats (sans-IO);
- ``api``: the typed py-consul edge (deadlines, one ``ConsulError``), ``client_factory``;
- ``export.Exporter``, ``imports.Importer``, ``leader.LeaderElector``: the three loops
  (the importer holds one blocking query per remote cluster's node, plus one on the
  heartbeat service, whatever the number of services);
- ``sync.ConsulSync``: the three wired together, each restarted after an unexpected
  error; ``settings.SyncSettings``: the tunables; ``metrics``: their counters.

Wiring (the controller)::

    sync = ConsulSync(
        "http://127.0.0.1:8500",           # or a ClientFactory, or None for CONSUL_HTTP_ADDR
        cluster="east", gateway_address="10.0.0.5", gateway_port=15443,
        trust_domain="east.local", locality="region-a/zone-1",
        exports=lambda: local_exports(store),  # -> Iterable[ExportedService]
        synced=store.synced,                # asyncio.Event: the sources' first full list
        settings=SyncSettings(),            # intervals, TTLs (see settings.py)
    )
    task = asyncio.create_task(sync.run())  # cancel to stop (releases the leader lock)
    sync.notify()                           # after every local change (debounced)
    version = await sync.wait_changed(version)  # imports changed
    sync.imports                            # {(cluster, ns, name): ImportedService}
    sync.metrics()                          # {name: number} for /metrics
    sync.is_leader

The pieces are usable alone: ``Exporter(factory, ClusterIdentity(...), exports, synced,
leadership=elector_or_AlwaysLeader)``, ``Importer(factory, cluster)`` (``imports``,
``version``, ``wait_changed``, ``ready``, ``errors``, ``last_success``) and
``LeaderElector(factory, cluster)`` (``is_leader``, ``wait_leader``, ``wait_change``).

Guarantees: only the leader writes, and only its own node ``isthmus-<cluster>``; nothing
is updated or deregistered before ``synced``; a restart with the same exports writes no
service; anti-entropy repairs hand edits and writes nothing when nothing drifted; Consul
being unreachable never empties the imports.
"""

from federation.consul.api import ClientFactory, ConsulError, client_factory
from federation.consul.export import Exporter
from federation.consul.imports import Importer
from federation.consul.leader import AlwaysLeader, LeaderElector
from federation.consul.records import ClusterIdentity
from federation.consul.settings import SyncSettings
from federation.consul.sync import ConsulSync

__all__ = [
    "AlwaysLeader",
    "ClientFactory",
    "ClusterIdentity",
    "ConsulError",
    "ConsulSync",
    "Exporter",
    "Importer",
    "LeaderElector",
    "SyncSettings",
    "client_factory",
]
