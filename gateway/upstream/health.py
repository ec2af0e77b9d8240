"""Active health checks: probe every endpoint of a cluster over HTTP, on a timer.

Configured per Service with the ``health.isthmus.dev/*`` annotations (snapshot
``HealthCheck``). Each worker probes on its own: a fresh connection per probe, ``GET path``
(HTTP/1.1 with ``Connection: close`` for HTTP/1.1 clusters, an HTTP/2 prior-knowledge
request for h2c clusters), healthy when the status is 2xx (or one of the configured ones)
within the timeout. An endpoint starts healthy; ``unhealthy_threshold`` failures in a row
take it out of rotation and ``healthy_threshold`` successes in a row bring it back. So
failover does not wait for live traffic to fail, as it does with outlier detection alone.

The first round runs at once, the rest every ``interval`` with up to 10% jitter so that
workers and proxies do not probe in lockstep.

Called by ``gateway.upstream.cluster``, which owns one checker per cluster that has one.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from gateway.config.snapshot import HealthCheck
from gateway.upstream.pool import EndpointPool

log = logging.getLogger("isthmus.health")


class HealthChecker:
    def __init__(
        self,
        config: HealthCheck,
        pools: Sequence[EndpointPool],
        on_change: Callable[[], None],
    ) -> None:
        self.config = config
        self.pools = tuple(pools)
        self.on_change = on_change
        self._successes: dict[str, int] = {}
        self._failures: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.probes_total = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        cfg = self.config
        while True:
            await self.check_all()
            await asyncio.sleep(cfg.interval_s * (1.0 + random.uniform(0.0, 0.1)))

    async def check_all(self) -> None:
        results = await asyncio.gather(*(self.probe(p) for p in self.pools))
        changed = False
        for pool, ok in zip(self.pools, results, strict=True):
            changed |= self._record(pool, ok)
        if changed:
            self.on_change()

    def _record(self, pool: EndpointPool, ok: bool) -> bool:
        key = pool.key
        cfg = self.config
        if ok:
            self._failures[key] = 0
            n = self._successes[key] = self._successes.get(key, 0) + 1
            if not pool.hc_healthy and n >= cfg.healthy_threshold:
                pool.hc_healthy = True
                log.info("endpoint %s is healthy again", key)
                return True
        else:
            self._successes[key] = 0
            n = self._failures[key] = self._failures.get(key, 0) + 1
            if pool.hc_healthy and n >= cfg.unhealthy_threshold:
                pool.hc_healthy = False
                log.warning("endpoint %s failed %d health checks", key, n)
                return True
        return False

    async def probe(self, pool: EndpointPool) -> bool:
        self.probes_total += 1
        cfg = self.config
        port = cfg.port or pool.port
        try:
            async with asyncio.timeout(cfg.timeout_s):
                reader, writer = await asyncio.open_connection(pool.address, port)
                try:
                    if pool.protocol == "h2c":
                        status = await _probe_h2(reader, writer, pool.address, cfg.path)
                    else:
                        status = await _probe_h1(reader, writer, pool.address, cfg.path)
                finally:
                    writer.close()
        except (OSError, TimeoutError, ValueError, h2.exceptions.H2Error):
            return False
        if cfg.expected_statuses:
            return status in cfg.expected_statuses
        return 200 <= status < 300


async def _probe_h1(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str
) -> int:
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: isthmus-health-check\r\n"
        "Connection: close\r\n\r\n".encode("latin-1")
    )
    line = await reader.readline()
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP/1.1 status line: {line[:80]!r}")
    return int(parts[1])


async def _probe_h2(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str
) -> int:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(
        sid,
        [(":method", "GET"), (":scheme", "http"), (":authority", host), (":path", path),
         ("user-agent", "isthmus-health-check")],
        end_stream=True,
    )  # fmt: skip
    writer.write(conn.data_to_send())
    while True:
        data = await reader.read(65536)
        if not data:
            raise ValueError("connection closed before the response")
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                for k, v in event.headers:
                    if k in (b":status", ":status"):
                        return int(v)
            if isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                raise ValueError("the probe stream was reset")
        out = conn.data_to_send()
        if out:
            writer.write(out)
