"""Fixtures for the federation sources tests: the Kubernetes API double, a TCP forwarder in
front of it (to cut the network or restart the double behind a stable address), a running
:class:`KubeSource` over the real ``kubernetes`` client, and object builders."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from kubernetes import client as k8s_client

from federation.sources.kube import KubeSource
from federation.sources.kube_watch import WatchSettings
from federation.sources.store import ObjectStore, StoreChange
from tests.support.kube_api import KubeApiDouble

FAST = WatchSettings(
    connect_timeout_s=2.0,
    list_timeout_s=5.0,
    backoff_initial_s=0.05,
    backoff_cap_s=0.4,
    missing_retry_s=0.3,
    min_watch_s=0.0,
)


class Forwarder:
    """A TCP forwarder to ``target()``; ``down()`` cuts every connection and refuses new ones
    (a network partition) until ``up()``."""

    def __init__(self, target: Callable[[], tuple[str, int]]) -> None:
        self.target = target
        self.port = 0
        self.accepted = 0
        self._up = True
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def down(self) -> None:
        self._up = False
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    def up(self) -> None:
        self._up = True

    async def close(self) -> None:
        self.down()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if not self._up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target())
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._pipes.difference_update((writer, up_writer))


@pytest.fixture
def kube() -> Iterator[KubeApiDouble]:
    double = KubeApiDouble().start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture
async def forwarder(kube: KubeApiDouble) -> AsyncIterator[Forwarder]:
    fwd = Forwarder(lambda: (kube.host, kube.port))
    await fwd.start()
    try:
        yield fwd
    finally:
        await fwd.close()


def api_for(kube: KubeApiDouble, url: str | None = None) -> k8s_client.ApiClient:
    configuration = kube.configuration()
    if url is not None:
        configuration.host = url
    configuration.connection_pool_maxsize = 32
    return k8s_client.ApiClient(configuration)


class Recorder:
    """Every change of a store, recorded; waiting on store conditions."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.changes: list[StoreChange] = []
        store.subscribe(self.changes.append)

    def changes_since(self, mark: int) -> list[StoreChange]:
        return self.changes[mark:]

    async def until(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Wait for a store condition, waking on every store change."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not reached; store: {self.store!r}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.store.wait_changed(self.store.version), remaining)


class Running(Recorder):
    """A Kubernetes source over a store (started by the test), its changes recorded."""

    def __init__(self, store: ObjectStore, source: KubeSource) -> None:
        super().__init__(store)
        self.source = source


async def eventually(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for a condition on state another thread writes (no event to await there)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.01)


@pytest.fixture
async def running(kube: KubeApiDouble) -> AsyncIterator[Running]:
    """A KubeSource talking to the double directly, started after the test's setup call."""
    store = ObjectStore()
    source = KubeSource(store, api_for(kube), settings=FAST)
    run = Running(store, source)
    try:
        yield run
    finally:
        await source.stop()


# -- object builders ------------------------------------------------------------------------


def service(name: str, namespace: str = "shop", ports: tuple[int, ...] = (80,)) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": f"p{p}", "port": p} for p in ports],
        },
    }


def endpoint_slice(
    service_name: str, addresses: tuple[str, ...], namespace: str = "shop", suffix: str = "a"
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service_name}-{suffix}",
            "namespace": namespace,
            "generateName": f"{service_name}-",
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": [a],
                "conditions": {"ready": True},
                "hints": {"forZones": [{"name": "z"}]},
            }
            for a in addresses
        ],
        "ports": [{"name": "p80", "port": 8080}],
    }


def service_export(
    name: str, namespace: str = "shop", annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "multicluster.x-k8s.io/v1alpha1",
        "kind": "ServiceExport",
        "metadata": meta,
    }
