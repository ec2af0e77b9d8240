"""A misbehaving HTTP/1.1 upstream for resilience tests, switchable while it runs.

:class:`FaultyBackend` is a small asyncio server in its own thread. Its ``mode`` says how it
treats each request, and can be changed at any time:

- ``ok``: 200 with ``x-backend: <name>`` and a short body, keep-alive;
- ``503`` (or any status as a string): that status, keep-alive;
- ``reset``: read the request, then close with a TCP RST (SO_LINGER 0);
- ``hang``: read the request and never answer (until the client leaves);
- ``close``: accept the connection and close it before reading anything.

``/healthz`` answers by ``healthy`` (200 or 503) whatever the mode, and is counted apart
(``health_checks``), so active health checks do not disturb the request counts. The counters
(``requests``, ``connections``, ``open_connections``, ``max_open_connections``) are updated
under a lock. ``delay_s`` delays every answer, so requests overlap.

A mode applies to requests that arrive after it is set. Tests read the counters instead of
sleeping: the helpers in ``tests.gateway.e2e.helpers`` poll them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Any

from tests.support.backends import _listening_socket, _LoopThread


class FaultyBackend:
    def __init__(self, name: str, mode: str = "ok") -> None:
        self.name = name
        self.mode = mode
        self.healthy = True
        self.delay_s = 0.0
        self.requests = 0
        self.health_checks = 0
        self.connections = 0
        self.open_connections = 0
        self.max_open_connections = 0
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._loop = _LoopThread(f"faulty-{name}")
        self._server: asyncio.Server | None = None
        self.port = 0

    def start(self) -> FaultyBackend:
        sock = _listening_socket()
        self.port = sock.getsockname()[1]
        self._loop.start()
        self._server = self._loop.serve(self._handle, sock)
        return self

    def stop(self) -> None:
        self._loop.stop_server(self._server)

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = 0
            self.health_checks = 0
            self.connections = 0
            self.max_open_connections = self.open_connections
            self.paths.clear()

    def _count(self, field: str, delta: int = 1) -> None:
        with self._lock:
            setattr(self, field, getattr(self, field) + delta)
            if field == "open_connections":
                self.max_open_connections = max(self.max_open_connections, self.open_connections)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._count("connections")
        self._count("open_connections")
        try:
            if self.mode == "close":
                writer.close()
                return
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                path, length = head
                if length:
                    await reader.readexactly(length)
                if path.startswith("/healthz"):
                    self._count("health_checks")
                    status = 200 if self.healthy else 503
                    writer.write(_response(status, self.name))
                    await writer.drain()
                    continue
                self._count("requests")
                with self._lock:
                    self.paths.append(path)
                mode = self.mode
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                if mode == "reset":
                    _rst(writer)
                    return
                if mode == "hang":
                    await reader.read()  # until the client goes away
                    return
                if mode == "close":
                    writer.close()
                    return
                status = 200 if mode == "ok" else int(mode)
                writer.write(_response(status, self.name))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._count("open_connections", -1)
            with contextlib.suppress(Exception):
                writer.close()


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, int] | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return (parts[1] if len(parts) > 1 else "/"), length


def _response(status: int, name: str) -> bytes:
    body = f"{name} {status}\n".encode()
    return (
        f"HTTP/1.1 {status} X\r\nx-backend: {name}\r\ncontent-type: text/plain\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


def _rst(writer: asyncio.StreamWriter) -> None:
    sock: Any = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def blackhole_port() -> tuple[socket.socket, list[socket.socket], int]:
    """A port whose SYNs go unanswered: a listener with a full backlog that never accepts.
    Connecting to it times out (the connect-timeout tests). Returns the listener, the
    connections that fill its backlog (keep them open) and the port."""
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", port))
        fillers.append(s)
    return lst, fillers, port
