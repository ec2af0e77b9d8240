"""Every proxy that has asked for a snapshot, and what it last said about it.

Kept by :class:`federation.snapshots.hub.SnapshotHub`: a long-poll records the version the
proxy asked with and when; a served snapshot records what it was sent; a status report
records whether the proxy applied or refused a version, and why. ``GET /v1/proxies`` (and so
``isthmus federation status``) renders the records against each proxy's current version.
Records live as long as the controller process: a proxy that went away shows as not
connected, with the time it was last seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from federation.snapshots.compile import ProxyInfo

CONNECTED_WITHIN_S = 60.0  # seen this recently (or polling now): connected


@dataclass(slots=True)
class ProxyRecord:
    info: ProxyInfo
    requested_version: str = ""  # the version its last poll carried
    served_version: str = ""  # the last snapshot sent to it
    applied_version: str = ""  # the last version it reported applied
    refused_version: str = ""  # the last version it reported refused
    error: str = ""  # why it refused refused_version
    last_seen: float = 0.0  # wall clock, seconds
    polls_in_flight: int = 0


class ProxyRegistry:
    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._records: dict[str, ProxyRecord] = {}

    def __len__(self) -> int:
        return len(self._records)

    def get(self, proxy_id: str) -> ProxyRecord | None:
        return self._records.get(proxy_id)

    def poll_started(self, info: ProxyInfo, version: str) -> ProxyRecord:
        record = self._records.get(info.id)
        if record is None:
            record = self._records[info.id] = ProxyRecord(info=info)
        record.info = info
        record.requested_version = version
        record.polls_in_flight += 1
        record.last_seen = self._wall()
        return record

    def poll_ended(self, proxy_id: str, served: str | None) -> None:
        record = self._records.get(proxy_id)
        if record is None:
            return
        record.polls_in_flight = max(0, record.polls_in_flight - 1)
        record.last_seen = self._wall()
        if served is not None:
            record.served_version = served

    def report(self, proxy_id: str, version: str, applied: bool, error: str) -> ProxyRecord:
        record = self._records.get(proxy_id)
        if record is None:
            record = self._records[proxy_id] = ProxyRecord(info=ProxyInfo(id=proxy_id))
        if applied:  # the latest report wins: an older refusal is history
            record.applied_version = version
            record.refused_version, record.error = "", ""
        else:
            record.refused_version = version
            record.error = error or "refused without a reason"
        record.last_seen = self._wall()
        return record

    def records(self) -> list[ProxyRecord]:
        return [self._records[k] for k in sorted(self._records)]

    def describe(self, record: ProxyRecord, target: str, compile_error: str) -> dict[str, Any]:
        """The JSON form of one record; ``target`` is the version it should run."""
        age = max(0.0, self._wall() - record.last_seen)
        return {
            "id": record.info.id,
            "role": record.info.role,
            "namespace": record.info.namespace,
            "workload": record.info.workload,
            "version": target,
            "requested_version": record.requested_version,
            "served_version": record.served_version,
            "applied_version": record.applied_version,
            "refused_version": record.refused_version,
            "state": _state(record, target),
            "in_sync": bool(target) and record.applied_version == target,
            "error": record.error,
            "compile_error": compile_error,
            "connected": record.polls_in_flight > 0 or age < CONNECTED_WITHIN_S,
            "last_seen": record.last_seen,
            "age_s": round(age, 3),
        }


def _state(record: ProxyRecord, target: str) -> str:
    if not target:
        return "no snapshot"
    if record.applied_version == target:
        return "in sync"
    if record.refused_version == target:
        return "refused"
    return "pending"
