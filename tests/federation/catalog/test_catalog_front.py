"""The catalog's front: its listening socket turns Nagle off on every connection (else each
kept-alive request waits for a delayed ACK, 40 ms), and its ASGI app
(``federation.catalog.app.CatalogApp``), without Starlette's router, reads the path and query
exactly as Starlette's ``Request`` does, answers the lifespan protocol, refuses WebSockets,
and sends every HTTP method to ``dispatch``."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from starlette.requests import Request

from federation.catalog.app import create_app, query_items, url_path
from federation.catalog.clock import ManualClock
from federation.catalog.server import bind
from federation.catalog.state import Store

PATHS = ["/v1/kv/a?b#c\\d", "/v1/catalog/register", "/v1/kv/%zz", "/v1/kv/é/ü", "//x"]
QUERIES = [b"", b"index=5&wait=10s&pretty&tag=a&tag=b", b"x=%20y+z&dc=", b"a=%ff&b&&c=="]


def _scope(path: str, query: bytes, method: str = "GET") -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "root_path": "",
            "query_string": query, "headers": [(b"host", b"127.0.0.1:8500")],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8500)}  # fmt: skip


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("query", QUERIES)
def test_path_and_query_are_read_as_starlette_reads_them(path: str, query: bytes) -> None:
    scope = _scope(path, query)
    request = Request(scope)
    assert url_path(scope) == request.url.path
    assert query_items(scope) == list(request.query_params.multi_items())


async def _call(app: Any, scope: dict[str, Any], inbound: list[dict[str, Any]]) -> list[Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbound.pop(0) if inbound else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 5)
    return sent


def _app() -> Any:
    return create_app(Store(clock=ManualClock()))


async def test_lifespan_starts_and_stops() -> None:
    sent = await _call(
        _app(), {"type": "lifespan"}, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    )
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_a_websocket_is_refused() -> None:
    sent = await _call(_app(), {"type": "websocket", "path": "/v1/kv/a", "headers": []}, [])
    assert sent == [{"type": "websocket.close", "code": 1000}]


async def test_any_method_reaches_dispatch() -> None:
    app = _app()
    sent = await _call(app, _scope("/v1/status/leader", b"", "TRACE"), [])
    assert sent[0]["status"] == 405
    assert (b"allow", b"OPTIONS,GET") in sent[0]["headers"]
    sent = await _call(app, _scope("/v1/status/leader", b"", "GET"), [])
    assert sent[0]["status"] == 200 and sent[1]["body"] == b'"127.0.0.1:8300"'
    assert app.state.store is not None and app.state.notifier is not None


async def test_every_accepted_connection_has_nagle_off() -> None:
    sock = bind("127.0.0.1", 0)
    accepted: asyncio.Queue[socket.socket] = asyncio.Queue()

    def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.put_nowait(writer.get_extra_info("socket"))

    server = await asyncio.start_server(connected, sock=sock)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        _reader, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        conn = await asyncio.wait_for(accepted.get(), 5)
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
