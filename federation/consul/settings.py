"""Tunables of Consul sync, one dataclass with a comment per field (unit in the name).

Built by the controller (``federation.controller``) from its command line, or by tests with
short intervals; read by the exporter, importer and leader elector of ``federation.consul``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SyncSettings:
    # Leader election (leader.py): the session's TTL (Consul allows 10..86400 s) and lock
    # delay. A crashed leader is replaced within session_ttl_s + lock_delay_s (Consul itself
    # may take up to twice the TTL to invalidate a session; the embedded catalog does not).
    session_ttl_s: int = 15
    lock_delay_s: int = 5
    # How often a standby retries acquiring a free lock that is still under lock delay.
    acquire_retry_s: float = 0.25

    # Export (export.py): the anti-entropy period (re-read the node, repair drift), and the
    # debounce of local changes: write ~debounce_s after the last change, at most
    # debounce_max_s after the first one.
    anti_entropy_interval_s: float = 30.0
    debounce_s: float = 0.1
    debounce_max_s: float = 1.0
    # How many registrations/deregistrations a pass keeps in flight at once.
    write_concurrency: int = 8

    # Heartbeat: the leader rewrites its node's heartbeat check every heartbeat_interval_s;
    # importers call a cluster unhealthy when they have seen no heartbeat for
    # heartbeat_ttl_s while they could reach Consul.
    heartbeat_interval_s: float = 10.0
    heartbeat_ttl_s: float = 30.0

    # Blocking queries (imports.py, leader.py): the wait sent to Consul, the least time
    # between two queries of one watch loop (the reference's rate limit) and the retry
    # backoff after an error (exponential with jitter, capped).
    blocking_wait_s: int = 60
    min_query_interval_s: float = 0.05
    # The same for the importer's node reads (one per remote cluster, each answer holding
    # every service that cluster exports: ~1.8 MB of JSON at 3,300 services). While a
    # cluster writes many services they would return after every write; this bounds them
    # to two reads a second per remote cluster (each ~6 ms of decoding at that size, see
    # node_read.py), so the last writes of a burst are read at most 0.5 s late. A single
    # change is not delayed: the query before it was blocking, so it started long ago.
    import_min_interval_s: float = 0.5
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0

    # Every non-blocking request gives up after this long (blocking ones after their wait
    # plus Consul's wait/16 jitter plus this).
    request_timeout_s: float = 10.0
    # The HTTP connection pool of each client. The importer holds one blocking query per
    # remote cluster plus one; Consul allows 200 connections per client address by default
    # (limits.http_max_conns_per_client), shared by every client of the controller.
    connections_limit: int = 64

    def __post_init__(self) -> None:
        if not 10 <= self.session_ttl_s <= 86400:
            raise ValueError(
                f"session_ttl_s must be 10..86400 (Consul's limits), got {self.session_ttl_s}"
            )
        if not 0 <= self.lock_delay_s <= 60:
            raise ValueError(f"lock_delay_s must be 0..60, got {self.lock_delay_s}")
        if self.connections_limit < 4:
            raise ValueError(f"connections_limit must be at least 4, got {self.connections_limit}")
        if self.write_concurrency < 1:
            raise ValueError(f"write_concurrency must be at least 1, got {self.write_concurrency}")
        if self.blocking_wait_s < 1:
            raise ValueError(f"blocking_wait_s must be at least 1, got {self.blocking_wait_s}")
        for name in (
            "acquire_retry_s",
            "anti_entropy_interval_s",
            "debounce_max_s",
            "heartbeat_interval_s",
            "heartbeat_ttl_s",
            "backoff_initial_s",
            "backoff_max_s",
            "request_timeout_s",
            "import_min_interval_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.heartbeat_ttl_s <= self.heartbeat_interval_s:
            raise ValueError("heartbeat_ttl_s must be longer than heartbeat_interval_s")
