"""Simulated proxies for the federation bench: N long-poll clients of one controller.

Used by ``bench.federation_bench`` inside its own (pinned) process. Each simulated proxy has
its own proxy id and does what ``gateway.process.control_plane.ControlPlaneSource`` does:
``GET /v1/snapshots/<id>?version=V&wait=30s&delta=1``, and on a 200 decodes the body into a
gateway ``Snapshot`` (or, when the controller sent a delta from ``V``, decodes the delta and
applies it with ``gateway.config.delta.apply``, which checks the result's content version)
and posts ``{"version", "applied": true}`` to ``/v1/snapshots/<id>/status`` before polling
again. "Applied" for a simulated proxy means **decoded** (and for a delta, applied and
checked), as the real proxy does first; the real proxy then builds its routing tables,
which is not measured here.

Timing: for the change armed with :meth:`Fleet.arm` (its write time ``t_write`` on
``time.monotonic``, which every process of the machine shares), each proxy records when it
finished reading (``received``) and decoding (``decoded``) the first snapshot in which the
change shows (``Change.cluster_name`` has ``Change.endpoints`` endpoints, or is gone). All
proxies share one event loop, so one proxy's decode delays the others' reads: with large
snapshots the figures include that queueing (a real proxy decodes on its own core).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
import msgspec

from bench.federation_data import Change
from gateway.config.delta import DeltaMismatch, Indexed, apply, decode_delta
from gateway.config.snapshot import Snapshot
from gateway.process.snapshot_wire import DELTA_BASE_HEADER

_DECODER = msgspec.json.Decoder(Snapshot)


def shows(snapshot: Indexed, change: Change) -> bool:
    """Whether ``change`` is visible in ``snapshot``."""
    cluster = snapshot.clusters.get(change.cluster_name)
    if cluster is None:
        return change.endpoints is None
    return change.endpoints is not None and len(cluster.endpoints) == change.endpoints


_COUNTS: dict[str, int] = {}  # version -> clusterset clusters (proxies share versions)


def clusterset_count(snapshot: Indexed) -> int:
    found = _COUNTS.get(snapshot.version)
    if found is None:
        found = _COUNTS[snapshot.version] = sum(1 for n in snapshot.clusters if ".clusterset:" in n)
    return found


@dataclass(slots=True)
class Armed:
    index: int
    change: Change
    t_write: float
    received: dict[str, float] = field(default_factory=dict)  # proxy id -> seconds
    decoded: dict[str, float] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class ProxyState:
    id: str
    version: str = ""
    held: Indexed | None = None
    clustersets: int = -1
    snapshots: int = 0
    errors: int = 0


class Fleet:
    """``count`` simulated proxies of the controller at ``url``."""

    def __init__(self, url: str, count: int, *, prefix: str = "bench-proxy") -> None:
        self.url = url.rstrip("/")
        self.proxies = [ProxyState(f"{prefix}-{i:03d}") for i in range(count)]
        self.armed: Armed | None = None
        self.bytes_max = 0
        self.decode_s: list[float] = []
        self.deltas = 0
        self.delta_bytes_max = 0
        self.changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=120),
        )
        self._tasks = [asyncio.create_task(self._run(p)) for p in self.proxies]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def arm(self, index: int, change: Change, t_write: float) -> Armed:
        self.armed = Armed(index, change, t_write)
        return self.armed

    async def wait_clustersets(self, expected: int, timeout_s: float) -> float | None:
        """Wait until every proxy's snapshot has ``expected`` clusterset clusters; returns
        the monotonic time it happened, or None on timeout."""
        deadline = time.monotonic() + timeout_s
        while not all(p.clustersets == expected for p in self.proxies):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                return None
        return time.monotonic()

    async def _run(self, proxy: ProxyState) -> None:
        session = self._session
        assert session is not None
        url = f"{self.url}/v1/snapshots/{proxy.id}"
        while True:
            try:
                params = {"version": proxy.version, "wait": "30s"}
                if proxy.held is not None:
                    params["delta"] = "1"
                async with session.get(url, params=params) as r:
                    if r.status == 304:
                        continue
                    if r.status != 200:
                        proxy.errors += 1
                        await asyncio.sleep(0.5)
                        continue
                    body = await r.read()
                    delta_base = r.headers.get(DELTA_BASE_HEADER)
                t_recv = time.monotonic()
                if delta_base is not None and proxy.held is not None:
                    try:
                        snapshot = apply(proxy.held, decode_delta(body))
                    except DeltaMismatch:
                        proxy.errors += 1
                        proxy.held, proxy.version = None, ""
                        continue
                    self.deltas += 1
                    self.delta_bytes_max = max(self.delta_bytes_max, len(body))
                else:
                    snapshot = Indexed(_DECODER.decode(body))
                    self.bytes_max = max(self.bytes_max, len(body))
                t_dec = time.monotonic()
                self.decode_s.append(t_dec - t_recv)
                self._seen(proxy, snapshot, t_recv, t_dec)
                status = {"version": snapshot.version, "applied": True, "error": ""}
                async with session.post(f"{url}/status", json=status) as r:
                    await r.read()
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError):
                proxy.errors += 1
                await asyncio.sleep(0.5)

    def _seen(self, proxy: ProxyState, snapshot: Indexed, t_recv: float, t_dec: float) -> None:
        proxy.version = snapshot.version
        proxy.held = snapshot
        proxy.snapshots += 1
        proxy.clustersets = clusterset_count(snapshot)
        armed = self.armed
        if armed is not None and proxy.id not in armed.decoded and shows(snapshot, armed.change):
            armed.received[proxy.id] = t_recv - armed.t_write
            armed.decoded[proxy.id] = t_dec - armed.t_write
            if len(armed.decoded) == len(self.proxies):
                armed.done.set()
        self.changed.set()
