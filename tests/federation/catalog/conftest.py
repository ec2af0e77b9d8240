"""Fixtures for the catalog conformance suite.

``consul_addr`` is the Consul the conformance tests talk to: the embedded catalog, started
once per session as a real ``isthmus catalog serve`` process, or the Consul named by
``CONSUL_HTTP_ADDR`` when that is set. Tests reach it only through py-consul (``client``,
``aclient``) and use ``uid`` to name their nodes, services and keys, so they do not see each
other's data and can run against a shared real Consul.

``start_catalog`` starts further embedded processes (persistence tests), and
``inproc_catalog`` serves the app in-process over a ``ManualClock`` (TTL and lock-delay tests
that move time instead of sleeping). Those two are the embedded-only part of the suite.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import consul
import consul.aio
import pytest

from federation.catalog.app import create_app
from federation.catalog.clock import ManualClock
from federation.catalog.server import bind, expire_sessions
from federation.catalog.state import Store

ROOT = Path(__file__).resolve().parents[3]
REAL_CONSUL = os.environ.get("CONSUL_HTTP_ADDR", "")


@dataclass
class CatalogProcess:
    """One ``isthmus catalog serve`` process started by a test."""

    args: list[str]
    proc: subprocess.Popen[str] | None = None
    host: str = "127.0.0.1"
    port: int = 0
    lines: list[str] = field(default_factory=list)

    def start(self) -> CatalogProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "isthmus", "catalog", "serve", *self.args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.lines.append(line)
        if "serving" not in line:
            self.proc.wait(timeout=10)
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"catalog did not start: {line!r} {err!r}")
        address = urlparse(line.strip().rsplit(" ", 1)[1])
        self.host, self.port = address.hostname or "127.0.0.1", address.port or 0
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        return code

    def client(self) -> consul.Consul:
        return consul.Consul(host=self.host, port=self.port)


@pytest.fixture
def start_catalog(tmp_path: Path) -> Iterator[Callable[..., CatalogProcess]]:
    started: list[CatalogProcess] = []

    def start(*args: str) -> CatalogProcess:
        proc = CatalogProcess(["--listen", "127.0.0.1:0", "--node", "catalog-test", *args])
        started.append(proc.start())
        return proc

    yield start
    for proc in started:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def consul_addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    if REAL_CONSUL:
        text = REAL_CONSUL if "//" in REAL_CONSUL else "//" + REAL_CONSUL
        parsed = urlparse(text)
        yield parsed.hostname or "127.0.0.1", parsed.port or 8500
        return
    data = tmp_path_factory.mktemp("catalog") / "catalog.json"
    proc = CatalogProcess(["--listen", "127.0.0.1:0", "--data", str(data)]).start()
    try:
        yield proc.host, proc.port
    finally:
        assert proc.stop() == 0


@pytest.fixture
def client(consul_addr: tuple[str, int]) -> consul.Consul:
    host, port = consul_addr
    return consul.Consul(host=host, port=port)


@pytest.fixture
async def aclient(consul_addr: tuple[str, int]) -> AsyncIterator[consul.aio.Consul]:
    host, port = consul_addr
    c = consul.aio.Consul(host=host, port=port)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def uid() -> str:
    return "t" + uuid.uuid4().hex[:10]


@dataclass
class InProcessCatalog:
    """The app served by uvicorn on a thread, over a store whose clock the test moves."""

    store: Store
    clock: ManualClock
    host: str
    port: int
    loop: asyncio.AbstractEventLoop

    def client(self) -> consul.Consul:
        return consul.Consul(host=self.host, port=self.port)

    def advance(self, seconds: float) -> None:
        """Move the clock; the TTL timer (ticking every 10 ms) acts on it."""
        self.clock.advance(seconds)


@pytest.fixture
def inproc_catalog() -> Iterator[InProcessCatalog]:
    import uvicorn

    clock = ManualClock()
    store = Store(clock=clock, node_name="inproc")
    store.ensure_agent_node()
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(store), log_level="warning", lifespan="off"))
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def main() -> None:
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(expire_sessions(store, stop, tick_s=0.01))
            ready.set()
            try:
                await server.serve(sockets=[sock])
            finally:
                stop.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield InProcessCatalog(store, clock, "127.0.0.1", port, loop)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        loop.close()
        sock.close()
