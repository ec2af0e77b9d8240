"""Helpers for the snapshot tests: resources from YAML, imports, an in-process server.

``load_yaml`` writes YAML documents to a fresh directory and loads them through the
gateway's loader, as the controller's sources would hand them over. ``imported`` builds an
``ImportedService``. ``serve_hub`` runs the real snapshot app with uvicorn on a loopback
port inside the test's event loop and yields its base URL; leaving the context closes the
hub (answering waiting polls) and stops the server.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import pytest
import uvicorn
from starlette.types import ASGIApp

from federation.model import ImportedService, ServicePort
from federation.snapshots.hub import SnapshotHub
from federation.snapshots.server import build_app
from gateway.config.loader import load_directory
from gateway.config.resources import Resources

T = TypeVar("T")
_dirs = itertools.count()


@pytest.fixture
def load_yaml(tmp_path: Path) -> Callable[..., Resources]:
    def load(*documents: str) -> Resources:
        directory = tmp_path / f"cfg-{next(_dirs)}"
        directory.mkdir()
        (directory / "objects.yaml").write_text("\n---\n".join(documents))
        return load_directory(directory)

    return load


def imported(
    cluster: str,
    name: str,
    *ports: int | tuple[int, str],
    namespace: str = "default",
    address: str = "192.0.2.10",
    gateway_port: int = 15443,
    trust_domain: str | None = None,
    locality: str = "",
    ready: int = 1,
    healthy: bool = True,
) -> ImportedService:
    return ImportedService(
        cluster=cluster,
        namespace=namespace,
        name=name,
        ports=tuple(
            ServicePort(name=f"p{p[0]}", port=p[0], app_protocol=p[1])
            if isinstance(p, tuple)
            else ServicePort(name=f"p{p}", port=p)
            for p in ports
        ),
        gateway_address=address,
        gateway_port=gateway_port,
        trust_domain=trust_domain or f"{cluster}.local",
        locality=locality,
        ready_endpoints=ready,
        healthy=healthy,
    )


def keyed(*services: ImportedService) -> dict[tuple[str, str, str], ImportedService]:
    return {(s.cluster, s.namespace, s.name): s for s in services}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def serve_app(
    app: ASGIApp, port: int = 0, *, tls: Callable[[uvicorn.Config], None] | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1:``port`` (0: any) in this event loop; ``tls``
    makes the config serve TLS (an https URL is yielded then)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=2
    )
    if tls is not None:
        tls(config)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started, what="uvicorn to start")
        scheme = "https" if tls is not None else "http"
        yield f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def serve_hub(hub: SnapshotHub, port: int = 0) -> AsyncIterator[str]:
    """The snapshot app over ``hub``; leaving closes the hub first (answering its polls)."""
    async with serve_app(build_app(hub), port) as url:
        try:
            yield url
        finally:
            await hub.aclose()


async def eventually(
    probe: Callable[[], T | Awaitable[T]], timeout_s: float = 10.0, what: str = ""
) -> T:
    """Await until ``probe`` returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        result = probe()
        last = await result if isinstance(result, Awaitable) else result
        if last:
            return last
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what or probe}: {last!r}")
