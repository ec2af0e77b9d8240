"""Which remote clusters' controllers are alive, judged from their heartbeats, without I/O.

Called by ``imports``. A remote leader rewrites its heartbeat check's Output every few
seconds (``records.HEARTBEAT_CHECK``); a cluster is alive while its check is passing and its
Output changed within its TTL, measured on *our* monotonic clock from when *we* saw the
change, so clocks need not agree across clusters.

Consul being unreachable is never read as a dead cluster: ``outage_over`` restarts every
cluster's timer when our reads succeed again, and the importer does not re-judge while its
reads fail. A cluster never seen (no heartbeat service yet) counts as alive.
"""

from __future__ import annotations

from dataclasses import dataclass

from federation.consul.records import Beat


@dataclass(slots=True)
class _Seen:
    beat: Beat
    since: float  # monotonic time at which we saw this Output first


class Liveness:
    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}

    def observe(self, beats: dict[str, Beat], now: float) -> None:
        """A successful read of every cluster's heartbeat."""
        for cluster in list(self._seen):
            if cluster not in beats:
                del self._seen[cluster]
        for cluster, beat in beats.items():
            seen = self._seen.get(cluster)
            if seen is None or seen.beat.output != beat.output:
                self._seen[cluster] = _Seen(beat, now)
            else:
                seen.beat = beat

    def outage_over(self, now: float) -> None:
        """Our reads work again: we could not see heartbeats meanwhile, so nobody is late."""
        for seen in self._seen.values():
            seen.since = max(seen.since, now)

    def alive(self, cluster: str, now: float) -> bool:
        seen = self._seen.get(cluster)
        if seen is None:
            return True
        return seen.beat.passing and now - seen.since <= seen.beat.ttl_s

    def alive_map(self, now: float) -> dict[str, bool]:
        return {cluster: self.alive(cluster, now) for cluster in self._seen}

    def next_deadline(self, now: float) -> float | None:
        """When some cluster's state may next flip to dead without any new read."""
        times = [
            s.since + s.beat.ttl_s
            for s in self._seen.values()
            if s.beat.passing and s.since + s.beat.ttl_s >= now
        ]
        return min(times) if times else None
