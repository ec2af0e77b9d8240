"""Counters of Consul sync, read by the controller's ``/metrics`` and by tests.

Each component owns one of these (``Exporter.metrics``, ``Importer.metrics``,
``LeaderElector.metrics``) and only increments fields; ``as_dict`` flattens one into
``{name: number}`` for rendering. Names are the metric names without a prefix; the writes
are split by kind (``register_service``, ``deregister_service``, ``heartbeat``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class LagStats:
    """Seconds from a local change to Consul holding it (or to finding it already held)."""

    count: int = 0
    sum_s: float = 0.0
    max_s: float = 0.0
    last_s: float = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.sum_s += seconds
        self.max_s = max(self.max_s, seconds)
        self.last_s = seconds


@dataclass(slots=True)
class ExportMetrics:
    writes: Counter[str] = field(default_factory=Counter)
    errors: int = 0  # failed Consul requests
    reconciles: int = 0  # completed diffs of the node (change-driven or anti-entropy)
    drift_repairs: int = 0  # writes made by anti-entropy passes (nothing had changed locally)
    held_back: int = 0  # updates/removals the last pass kept back until the sources synced
    exported: int = 0  # services the last pass wanted on the node (heartbeat excluded)
    name_conflicts: int = 0  # exports dropped because their Consul name was taken
    provider_errors: int = 0  # the exports callable raised
    last_success: float = 0.0  # wall-clock time of the last completed pass
    sync_lag: LagStats = field(default_factory=LagStats)

    @property
    def deregistrations(self) -> int:
        return self.writes["deregister_service"]

    def as_dict(self) -> dict[str, float]:
        out: dict[str, float] = {f"consul_writes_{k}": float(v) for k, v in self.writes.items()}
        out.update(
            consul_export_errors=self.errors,
            consul_reconciles=self.reconciles,
            consul_drift_repairs=self.drift_repairs,
            consul_held_back=self.held_back,
            consul_exported_services=self.exported,
            consul_export_name_conflicts=self.name_conflicts,
            consul_export_provider_errors=self.provider_errors,
            consul_export_last_success=self.last_success,
            consul_sync_lag_count=self.sync_lag.count,
            consul_sync_lag_sum_seconds=self.sync_lag.sum_s,
            consul_sync_lag_max_seconds=self.sync_lag.max_s,
            consul_sync_lag_last_seconds=self.sync_lag.last_s,
        )
        return out


@dataclass(slots=True)
class ImportMetrics:
    errors: int = 0  # failed Consul requests (the last known imports were kept)
    queries: int = 0  # completed blocking queries
    bad_entries: int = 0  # isthmus entries skipped for malformed Meta
    watched: int = 0  # services with a health watch
    imported: int = 0  # entries in the current import map
    last_success: float = 0.0  # wall-clock time of the last successful read

    def as_dict(self) -> dict[str, float]:
        return {
            "consul_import_errors": self.errors,
            "consul_import_queries": self.queries,
            "consul_import_bad_entries": self.bad_entries,
            "consul_import_watched_services": self.watched,
            "consul_imported_services": self.imported,
            "consul_import_last_success": self.last_success,
        }


@dataclass(slots=True)
class LeaderMetrics:
    is_leader: bool = False
    transitions: int = 0  # leadership gained or lost
    sessions_created: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, float]:
        return {
            "consul_leader": 1.0 if self.is_leader else 0.0,
            "consul_leader_transitions": self.transitions,
            "consul_sessions_created": self.sessions_created,
            "consul_leader_errors": self.errors,
        }
