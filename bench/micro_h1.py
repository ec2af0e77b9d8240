"""Micro-benchmark of the HTTP/1.1 request path without sockets: Python cost per request.

Drives a real DownstreamConnection and a real upstream H1 connection through fake
transports, so the figure is the proxy's own CPU per request with no syscalls. Run with
``python -m bench.micro_h1 [--profile]``; used to find what to optimise (see bench/README).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time

from gateway.config.snapshot import (
    Cluster,
    Endpoint,
    HTTPRouteConfig,
    Listener,
    PortBinding,
    RouteRule,
    Snapshot,
    WeightedBackend,
)  # fmt: skip
from gateway.proxy.engine import Engine
from gateway.transport.connection import DownstreamConnection
from gateway.upstream.http1 import H1UpstreamConnection

REQUEST = b"GET /hello HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Wed, 25 Nov 2026 21:40:55 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n"
            b"hello world\n")  # fmt: skip


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def run(n: int, profile: bool) -> None:
    engine = Engine()
    backend = WeightedBackend(cluster="default/up:80")
    route = HTTPRouteConfig(
        kind="HTTPRoute", namespace="default", name="r", rules=(RouteRule(backends=(backend,)),)
    )
    listener = Listener(gateway="default/gw", name="http", port=0, protocol="HTTP",
                        http_routes=(route,))  # fmt: skip
    snap = Snapshot(
        ports=(PortBinding(address="127.0.0.1", port=0, protocol="HTTP", listeners=(listener,)),),
        clusters=(
            Cluster(name="default/up:80", endpoints=(Endpoint(address="127.0.0.1", port=9),)),
        ),
    ).with_version()
    await engine.apply(snap)
    lst = next(iter(engine.listeners.values()))
    down = lst._new_protocol()
    assert isinstance(down, DownstreamConnection)
    dt = FakeTransport()
    down.connection_made(dt)  # type: ignore[arg-type]
    pool = engine.clusters.get("default/up:80").pools["127.0.0.1:9"]  # type: ignore[union-attr]
    up = H1UpstreamConnection(pool._on_idle, 65536)
    ut = FakeTransport()
    up.connection_made(ut)  # type: ignore[arg-type]
    pool.idle.append(up)
    prof = cProfile.Profile() if profile else None
    # warm up
    for _ in range(1000):
        down.data_received(REQUEST)
        up.data_received(RESPONSE)
        await asyncio.sleep(0)
    if prof:
        prof.enable()
    t0 = time.perf_counter()
    for _ in range(n):
        down.data_received(REQUEST)
        up.data_received(RESPONSE)
        await asyncio.sleep(0)
    dt_s = time.perf_counter() - t0
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    print(f"{n} requests: {dt_s / n * 1e6:.2f} us/request (python only, no syscalls)")
    assert dt.out[-1].endswith(b"hello world\n"), dt.out[-1]
    await engine.aclose()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("-n", type=int, default=50000)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    try:
        import uvloop

        uvloop.run(run(args.n, args.profile))
    except ImportError:
        asyncio.run(run(args.n, args.profile))


if __name__ == "__main__":
    main()
