"""TLSRoute resolution for passthrough listeners: SNI name → weighted backend → endpoint.

:class:`TlsRouter` is built per snapshot for one passthrough port. The transport calls it
with the ClientHello's SNI and gets back the cluster name and a connect function.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence

from gateway.config.snapshot import Listener, WeightedBackend
from gateway.routing.hostnames import HostIndex, intersect_hostnames, normalize_hostname
from gateway.upstream.cluster import ClusterManager

Connect = Callable[[asyncio.Protocol], Awaitable[asyncio.Transport]]


class TlsRouter:
    def __init__(self, listeners: Sequence[Listener], clusters: ClusterManager) -> None:
        self.clusters = clusters
        self.index: HostIndex[tuple[WeightedBackend, ...]] = HostIndex()
        for listener in listeners:
            lhost = normalize_hostname(listener.hostname) if listener.hostname else None
            for route in listener.tls_routes:
                names: list[str | None] = []
                if route.hostnames:
                    for h in route.hostnames:
                        served = intersect_hostnames(lhost, normalize_hostname(h))
                        if served is not None:
                            names.append(served)
                else:
                    names.append(lhost)
                for name in names:
                    if self.index.lookup(name or "") is None or name is not None:
                        self.index.add(name, route.backends)

    def __call__(self, sni: str | None) -> tuple[str, Connect] | None:
        backends = self.index.lookup(sni or "")
        if not backends:
            return None
        live = [b for b in backends if b.weight > 0 and b.cluster]
        if not live:
            return None
        total = sum(b.weight for b in live)
        r = random.random() * total
        chosen = live[-1]
        for b in live:
            r -= b.weight
            if r < 0:
                chosen = b
                break
        cluster = self.clusters.get(chosen.cluster)
        if cluster is None:
            return None
        pool = cluster.pick()
        if pool is None:
            return None
        address, port, timeout = pool.address, pool.port, pool.connect_timeout_s

        async def connect(protocol: asyncio.Protocol) -> asyncio.Transport:
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(timeout):
                transport, _ = await loop.create_connection(lambda: protocol, address, port)
            return transport

        return chosen.cluster, connect
