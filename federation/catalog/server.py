"""Runs the embedded catalog: uvicorn serving ``app``, the session TTL timer and the
persister, in one event loop.

Called by ``isthmus catalog serve`` (``isthmus.commands.catalog``). It binds the listening
socket itself so that ``--listen HOST:0`` can report the port it got, loads ``--data`` before
serving (and refuses to start over a file it cannot read), writes the file shortly after
every change (atomically, coalescing bursts) and once more at shutdown. SIGTERM and SIGINT
stop it cleanly with exit status 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType

import uvicorn

from federation.catalog import persist, sessions
from federation.catalog.app import create_app
from federation.catalog.blocking import Notifier
from federation.catalog.clock import MonotonicClock
from federation.catalog.state import Store
from gateway.process.gc_tuning import tune_for_large_state

log = logging.getLogger(__name__)

FLUSH_DELAY_S = 0.1  # coalesce a burst of writes into one file write
EXPIRY_TICK_S = 0.5  # longest sleep of the TTL timer (new sessions have TTL >= 10 s)
SHUTDOWN_GRACE_S = 5  # then requests still running are cancelled


class Persister:
    """Keeps ``path`` in step with the store: a write soon after each change, never two at
    once, and a final synchronous write at shutdown."""

    def __init__(self, store: Store, path: str, *, delay_s: float = FLUSH_DELAY_S) -> None:
        self._store = store
        self._path = path
        self._delay_s = delay_s
        self._dirty = asyncio.Event()
        self.writes = 0

    def on_change(self, topics: frozenset[str]) -> None:
        self._dirty.set()

    async def run(self, stop: asyncio.Event) -> None:
        while True:
            dirty = asyncio.ensure_future(self._dirty.wait())
            stopped = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({dirty, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (dirty, stopped):
                    task.cancel()
                await asyncio.gather(dirty, stopped, return_exceptions=True)
            if stop.is_set():
                return
            await asyncio.sleep(self._delay_s)
            self._dirty.clear()
            data = persist.dump(self._store)
            try:
                await asyncio.to_thread(persist.write_atomic, self._path, data)
                self.writes += 1
            except OSError as exc:
                log.error("catalog: cannot write %s: %s (will retry)", self._path, exc)
                self._dirty.set()
                await asyncio.sleep(1.0)

    def flush(self) -> None:
        persist.write_atomic(self._path, persist.dump(self._store))
        self.writes += 1


async def expire_sessions(
    store: Store, stop: asyncio.Event, *, tick_s: float = EXPIRY_TICK_S
) -> None:
    """Invalidate TTL sessions as their deadlines pass."""
    while not stop.is_set():
        deadline = sessions.next_deadline(store)
        delay = tick_s
        if deadline is not None:
            delay = min(tick_s, max(0.0, deadline - store.clock.now()))
        try:
            async with asyncio.timeout(delay):
                await stop.wait()
        except TimeoutError:
            pass
        sessions.expire(store)


class CatalogServer(uvicorn.Server):
    """uvicorn waits for open requests before it stops; held blocking queries are answered
    at once (with their current data) so that a shutdown is not held up for minutes."""

    def __init__(self, config: uvicorn.Config, notifier: Notifier) -> None:
        super().__init__(config)
        self._notifier = notifier

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._notifier.close()
        await super().shutdown(sockets)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket. Its protocol is spelled out (``IPPROTO_TCP``, not 0): asyncio
    turns Nagle off only on accepted sockets whose ``proto`` says TCP, and with Nagle on, a
    response written in two parts (headers, then body) waits for the client's delayed ACK,
    40 ms on Linux, on every request of a kept-alive connection. ``TCP_NODELAY`` is also set
    here, which accepted sockets inherit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def run(
    host: str,
    port: int,
    *,
    data: str | None = None,
    datacenter: str = "dc1",
    node_name: str = "isthmus-catalog",
    announce: Callable[[str], None] = print,
) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit status."""
    tune_for_large_state()
    store = Store(clock=MonotonicClock(), datacenter=datacenter, node_name=node_name)
    if data:
        try:
            loaded = persist.load_file(store, data)
        except persist.DataFileError as exc:
            print(f"isthmus catalog: cannot load --data {exc}", file=sys.stderr)
            return 2
        if loaded and store.datacenter != datacenter:
            store.datacenter = datacenter
    store.ensure_agent_node()
    try:
        sock = bind(host, port)
    except OSError as exc:
        print(f"isthmus catalog: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 2
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    leader_ip = "127.0.0.1" if bound_host in ("0.0.0.0", "::") else bound_host
    app = create_app(store, leader=f"{leader_ip}:8300")
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    server = CatalogServer(config, app.state.notifier)

    def request_stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    # uvicorn installs its own handlers while serving and, once done, re-raises the signal
    # through the handlers it found: these, so the process ends by returning, not by dying.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    announce(f"isthmus catalog: serving the Consul HTTP API on http://{shown}:{bound_port}")
    if data:
        announce(f"isthmus catalog: data file {data} (index {store.index})")
    try:
        asyncio.run(_serve(server, sock, store, data))
    finally:
        sock.close()
    return 0


async def _serve(
    server: uvicorn.Server, sock: socket.socket, store: Store, data: str | None
) -> None:
    stop = asyncio.Event()
    persister = Persister(store, data) if data else None
    unsubscribe = store.subscribe(persister.on_change) if persister else None
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(expire_sessions(store, stop))
            if persister is not None:
                tasks.create_task(persister.run(stop))
            try:
                await server.serve(sockets=[sock])
            finally:
                stop.set()
    finally:
        if unsubscribe is not None:
            unsubscribe()
        if persister is not None:
            persister.flush()
