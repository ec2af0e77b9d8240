"""HealthChecker against real sockets: thresholds, statuses, timeouts, refusals, h2c.

Each test runs tiny servers on the test's own event loop and calls ``check_all`` itself, one
round at a time: no timers, no sleeps. The servers' answer can be flipped between rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import h2.config
import h2.connection
import h2.events
import pytest

from gateway.config.snapshot import HealthCheck
from gateway.upstream.health import HealthChecker
from gateway.upstream.pool import EndpointPool


class H1Server:
    """Answers every request with ``status`` and closes; ``reply`` replaces the whole answer."""

    def __init__(self) -> None:
        self.status = 200
        self.reply: bytes | None = None
        self.heads: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> H1Server:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            self.heads.append(await reader.readuntil(b"\r\n\r\n"))
            if self.reply is not None:
                writer.write(self.reply)
            else:
                writer.write(
                    f"HTTP/1.1 {self.status} Whatever\r\ncontent-length: 0\r\n\r\n".encode()
                )
            await writer.drain()
        writer.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


class SilentServer:
    """Accepts connections and never answers."""

    def __init__(self) -> None:
        self.port = 0
        self.accepted = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> SilentServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)

    async def stop(self) -> None:
        assert self._server is not None
        for w in self._writers:
            w.close()
        self._server.close()
        await self._server.wait_closed()


class H2Server:
    """HTTP/2 with prior knowledge: answers every stream with ``status``."""

    def __init__(self) -> None:
        self.status = 200
        self.requests: list[dict[bytes, bytes]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> H2Server:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        self.requests.append(dict(event.headers))
                        conn.send_headers(
                            event.stream_id, [(":status", str(self.status))], end_stream=True
                        )
                writer.write(conn.data_to_send())
                await writer.drain()
        writer.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def h1() -> AsyncIterator[H1Server]:
    server = await H1Server().start()
    yield server
    await server.stop()


@pytest.fixture
async def h1_b() -> AsyncIterator[H1Server]:
    server = await H1Server().start()
    yield server
    await server.stop()


@pytest.fixture
async def silent() -> AsyncIterator[SilentServer]:
    server = await SilentServer().start()
    yield server
    await server.stop()


@pytest.fixture
async def h2c() -> AsyncIterator[H2Server]:
    server = await H2Server().start()
    yield server
    await server.stop()


def closed_port() -> int:
    """A port nobody listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def endpoint(port: int, protocol: str = "http1") -> EndpointPool:
    return EndpointPool("127.0.0.1", port, protocol=protocol, connect_timeout_s=1.0)


class Changes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def checker(pools: list[EndpointPool], **config: object) -> tuple[HealthChecker, Changes]:
    changes = Changes()
    config.setdefault("timeout_s", 2.0)
    cfg = HealthCheck(**config)  # type: ignore[arg-type]
    return HealthChecker(cfg, pools, changes), changes


async def rounds(hc: HealthChecker, n: int) -> None:
    for _ in range(n):
        await hc.check_all()


async def test_unhealthy_after_the_threshold_of_failures(h1: H1Server) -> None:
    pool = endpoint(h1.port)
    hc, changes = checker([pool], unhealthy_threshold=3)
    await hc.check_all()
    assert pool.hc_healthy and changes.count == 0  # it starts healthy
    h1.status = 503
    await rounds(hc, 2)
    assert pool.hc_healthy and changes.count == 0
    await hc.check_all()
    assert not pool.hc_healthy and changes.count == 1
    await rounds(hc, 3)
    assert not pool.hc_healthy and changes.count == 1  # no flip, no call
    assert hc.probes_total == 7
    assert len(h1.heads) == 7


async def test_healthy_again_after_the_threshold_of_successes(h1: H1Server) -> None:
    pool = endpoint(h1.port)
    hc, changes = checker([pool], unhealthy_threshold=1, healthy_threshold=3)
    h1.status = 500
    await hc.check_all()
    assert not pool.hc_healthy and changes.count == 1
    h1.status = 200
    await rounds(hc, 2)
    assert not pool.hc_healthy and changes.count == 1
    await hc.check_all()
    assert pool.hc_healthy and changes.count == 2


async def test_a_success_resets_the_failure_count_and_back(h1: H1Server) -> None:
    pool = endpoint(h1.port)
    hc, changes = checker([pool], unhealthy_threshold=2, healthy_threshold=2)
    for status in (503, 200, 503, 200, 503):
        h1.status = status
        await hc.check_all()
    assert pool.hc_healthy and changes.count == 0
    h1.status = 503
    await hc.check_all()
    assert not pool.hc_healthy and changes.count == 1
    for status in (200, 503, 200, 503):
        h1.status = status
        await hc.check_all()
    assert not pool.hc_healthy and changes.count == 1


@pytest.mark.parametrize(
    ("status", "expected_statuses", "ok"),
    [
        (200, (), True),
        (204, (), True),
        (299, (), True),
        (301, (), False),
        (404, (), False),
        (503, (), False),
        (418, (418,), True),
        (200, (418,), False),  # the list replaces "any 2xx"
        (503, (200, 503), True),
    ],
)
async def test_probe_status(
    h1: H1Server, status: int, expected_statuses: tuple[int, ...], ok: bool
) -> None:
    h1.status = status
    hc, _ = checker([endpoint(h1.port)], expected_statuses=expected_statuses)
    assert await hc.probe(hc.pools[0]) is ok


async def test_probe_request_uses_the_path_and_closes(h1: H1Server) -> None:
    hc, _ = checker([endpoint(h1.port)], path="/ready?full=1")
    assert await hc.probe(hc.pools[0])
    (head,) = h1.heads
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "GET /ready?full=1 HTTP/1.1"
    assert "Host: 127.0.0.1" in lines
    assert "Connection: close" in lines


async def test_probe_goes_to_the_configured_port(h1: H1Server) -> None:
    pool = endpoint(closed_port())
    hc, _ = checker([pool], port=h1.port)
    assert await hc.probe(pool)
    assert len(h1.heads) == 1


async def test_timeout_is_a_failure(silent: SilentServer) -> None:
    pool = endpoint(silent.port)
    hc, changes = checker([pool], unhealthy_threshold=1, timeout_s=0.2)
    started = time.monotonic()
    await hc.check_all()
    assert time.monotonic() - started < 1.5
    assert silent.accepted == 1
    assert not pool.hc_healthy and changes.count == 1


async def test_connection_refused_is_a_failure() -> None:
    pool = endpoint(closed_port())
    hc, changes = checker([pool], unhealthy_threshold=1)
    assert not await hc.probe(pool)
    await hc.check_all()
    assert not pool.hc_healthy and changes.count == 1


@pytest.mark.parametrize(
    "reply",
    [b"hello there\r\n", b"HTTP/1.1 OK\r\n\r\n", b"", b"SSH-2.0-OpenSSH_9.6\r\n"],
)
async def test_a_reply_that_is_not_http_is_a_failure(h1: H1Server, reply: bytes) -> None:
    h1.reply = reply
    hc, _ = checker([endpoint(h1.port)])
    assert not await hc.probe(hc.pools[0])


async def test_one_call_per_round_for_several_flips(h1: H1Server, h1_b: H1Server) -> None:
    a, b = endpoint(h1.port), endpoint(h1_b.port)
    hc, changes = checker([a, b], unhealthy_threshold=1, healthy_threshold=1)
    h1.status = h1_b.status = 503
    await hc.check_all()
    assert (a.hc_healthy, b.hc_healthy, changes.count) == (False, False, 1)
    h1.status = 200
    await hc.check_all()
    assert (a.hc_healthy, b.hc_healthy, changes.count) == (True, False, 2)
    await hc.check_all()
    assert changes.count == 2
    h1_b.status = 200
    await hc.check_all()
    assert (a.hc_healthy, b.hc_healthy, changes.count) == (True, True, 3)


async def test_endpoints_are_counted_apart(h1: H1Server) -> None:
    up, down = endpoint(h1.port), endpoint(closed_port())
    hc, changes = checker([up, down], unhealthy_threshold=2)
    await rounds(hc, 2)
    assert up.hc_healthy and not down.hc_healthy
    assert changes.count == 1


async def test_h2c_probe(h2c: H2Server) -> None:
    pool = endpoint(h2c.port, "h2c")
    hc, changes = checker([pool], path="/healthz", unhealthy_threshold=1, healthy_threshold=1)
    await hc.check_all()
    assert pool.hc_healthy and changes.count == 0
    (request,) = h2c.requests
    assert request[b":method"] == b"GET"
    assert request[b":path"] == b"/healthz"
    assert request[b":scheme"] == b"http"
    h2c.status = 503
    await hc.check_all()
    assert not pool.hc_healthy and changes.count == 1
    h2c.status = 204
    await hc.check_all()
    assert pool.hc_healthy and changes.count == 2


async def test_h2c_probe_against_an_http1_server_fails(h1: H1Server) -> None:
    hc, _ = checker([endpoint(h1.port, "h2c")])
    assert not await hc.probe(hc.pools[0])


async def test_h1_probe_against_an_h2c_server_fails(h2c: H2Server) -> None:
    hc, _ = checker([endpoint(h2c.port)])
    assert not await hc.probe(hc.pools[0])


async def test_start_runs_a_round_at_once_and_stop_ends_it(h1: H1Server) -> None:
    pool = endpoint(h1.port)
    changed = asyncio.Event()
    h1.status = 503
    hc = HealthChecker(HealthCheck(unhealthy_threshold=1, interval_s=60.0), [pool], changed.set)
    hc.start()
    hc.start()  # idempotent
    try:
        await asyncio.wait_for(changed.wait(), 5.0)
        assert not pool.hc_healthy
    finally:
        hc.stop()
    assert hc._task is None
    assert len(h1.heads) == 1
