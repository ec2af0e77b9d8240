"""Fixtures for the Consul sync tests.

``consul_addr`` is the Consul the tests share: a real ``isthmus catalog serve`` process
started once per session (with ``--data``), or the Consul named by ``CONSUL_HTTP_ADDR``.
``restartable_catalog`` starts a private embedded catalog that a test stops and starts
again on the same port (outage tests; embedded only). ``names`` gives each test its own
cluster names and removes their nodes and keys afterwards, so tests sharing a catalog do
not see each other's exports as their own. ``running`` stops every ``ConsulSync`` a test
started. Helpers are in ``consul_sync_support.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import consul.aio
import pytest

from tests.federation.consul.consul_sync_support import REAL_CONSUL, CatalogProc, Running


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a long-running test (the 30 s Consul outage)")


@pytest.fixture(scope="session")
def consul_addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    if REAL_CONSUL:
        parsed = urlparse(REAL_CONSUL if "//" in REAL_CONSUL else "//" + REAL_CONSUL)
        yield parsed.hostname or "127.0.0.1", parsed.port or 8500
        return
    proc = CatalogProc(tmp_path_factory.mktemp("consul-sync") / "catalog.json").start()
    try:
        yield proc.host, proc.port
    finally:
        proc.stop()


@pytest.fixture
def restartable_catalog(tmp_path: Path) -> Iterator[CatalogProc]:
    if REAL_CONSUL:
        pytest.skip("stops and restarts the catalog process: embedded catalog only")
    proc = CatalogProc(tmp_path / "catalog.json").start()
    try:
        yield proc
    finally:
        proc.kill()


@pytest.fixture
def uid() -> str:
    return "t" + uuid.uuid4().hex[:8]


@pytest.fixture
async def names(uid: str, consul_addr: tuple[str, int]) -> AsyncIterator[Callable[[str], str]]:
    used: list[str] = []

    def name(suffix: str) -> str:
        used.append(f"{uid}-{suffix}")
        return used[-1]

    yield name
    host, port = consul_addr
    async with consul.aio.Consul(host=host, port=port) as client:
        for cluster in used:
            await client.catalog.deregister(f"isthmus-{cluster}")
            await client.kv.delete(f"isthmus/{cluster}/", recurse=True)


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    r = Running()
    try:
        yield r
    finally:
        await r.stop_all()
