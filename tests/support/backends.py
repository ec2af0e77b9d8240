"""Real backends for end-to-end tests, each serving from a background thread.

Every backend has ``start()`` / ``stop()``, a ``port`` once started, and a ``name`` that it
returns in an ``x-backend`` header (HTTP) or initial metadata (gRPC), so that tests can count
which backend a request reached. Each one records what it received (``requests``), so a test
can check, for example, that a mirror got a copy or that a rewrite changed the path.

- :class:`HttpBackend`: HTTP/1.1 (uvicorn + Starlette, its own event loop in a thread).
  ``/echo`` (and any unknown path) answers JSON describing the request (method, path, query,
  headers, body length and sha256); ``/stream?chunks=N&size=S`` streams a chunked body
  (see :func:`stream_payload`); ``/bytes?size=N`` a fixed-length body; ``/status/{code}``;
  ``/slow?ms=N``; ``/reflect`` streams the request body back as it arrives; ``/ws`` is a
  WebSocket echo. uvicorn cannot send HTTP/1.1 trailers, so there is no ``/trailers`` here.
- :class:`H2cBackend`: prior-knowledge HTTP/2 (h2 over asyncio). Same paths (without ``/ws``
  and ``/bytes``) plus ``/trailers``; it echoes request trailers, advertises a configurable
  SETTINGS_MAX_CONCURRENT_STREAMS and records the highest number of streams it ever saw open
  at once on one connection (``max_concurrent_seen``).
- :class:`GrpcBackend`: grpcio with generic handlers over raw bytes (no protoc):
  ``isthmus.test.Echo/{Unary,ServerStream,Bidi,Sleep,Fail}`` and ``isthmus.test.Other/Unary``.
- :class:`TlsEchoBackend`: a TLS line-echo server with its own certificate, for passthrough.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import grpc
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

_BLOCK = bytes(range(256)) * 256  # 64 KiB
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


# -- payloads -----------------------------------------------------------------------------------


def payload_chunk(index: int, size: int) -> bytes:
    """Chunk ``index`` of a streamed body: deterministic, different for every index mod 256."""
    base = _BLOCK[index % 256 :] + _BLOCK
    while len(base) < size:
        base += _BLOCK
    return base[:size]


def stream_payload(chunks: int, size: int) -> Iterable[bytes]:
    """The chunks ``/stream?chunks=N&size=S`` sends."""
    for i in range(chunks):
        yield payload_chunk(i, size)


def stream_sha256(chunks: int, size: int) -> str:
    digest = hashlib.sha256()
    for chunk in stream_payload(chunks, size):
        digest.update(chunk)
    return digest.hexdigest()


def _bytes_body(size: int) -> bytes:
    return b"".join(stream_payload(size // 65536, 65536)) + payload_chunk(
        size // 65536, size % 65536
    )


def bytes_sha256(size: int) -> str:
    """sha256 of the body ``/bytes?size=N`` sends."""
    return hashlib.sha256(_bytes_body(size)).hexdigest()


@dataclass
class Seen:
    """One request as a backend received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body_bytes: int = 0
    protocol: str = ""


def _join_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in pairs:
        key = key.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


class _Recorder:
    """The requests a backend saw; appended from the backend thread, read by tests."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self._lock = threading.Lock()

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def seen_paths(self) -> list[str]:
        with self._lock:
            return [s.path for s in self.requests]

    def wait_for(self, predicate: Callable[[Seen], bool], timeout_s: float = 5.0) -> Seen:
        """The first recorded request matching ``predicate``, waiting up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                for seen in self.requests:
                    if predicate(seen):
                        return seen
            if time.monotonic() > deadline:
                raise TimeoutError(f"no matching request in {self.seen_paths()}")
            time.sleep(0.02)


def _listening_socket(host: str = "127.0.0.1") -> socket.socket:
    # proto IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY only on sockets that say they are
    # TCP, and accepted sockets inherit the proto. Without it, Nagle's algorithm and delayed
    # ACKs add 40 ms to every keep-alive response written in two pieces.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


# -- HTTP/1.1: uvicorn + Starlette --------------------------------------------------------------


class _QuietServer(uvicorn.Server):
    """A uvicorn server that never touches signal handlers (it runs in a thread)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _query_int(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        return default


class HttpBackend(_Recorder):
    """An HTTP/1.1 echo backend (see the module docstring for its paths)."""

    def __init__(self, name: str, host: str = "127.0.0.1") -> None:
        super().__init__()
        self.name = name
        self.host = host
        self.port = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._server: _QuietServer | None = None
        self._thread: threading.Thread | None = None

    # -- the app --------------------------------------------------------------------------

    def _describe(self, request: Request, body_len: int, digest: str) -> dict[str, Any]:
        return {
            "backend": self.name,
            "method": request.method,
            "path": request.url.path,
            "raw_path": request.scope.get("raw_path", b"").decode("latin-1"),
            "query": request.url.query,
            "http_version": request.scope.get("http_version", ""),
            "headers": _join_headers(request.headers.items()),
            "body_bytes": body_len,
            "body_sha256": digest,
        }

    async def _read_body(self, request: Request) -> tuple[int, str]:
        digest = hashlib.sha256()
        total = 0
        async for chunk in request.stream():
            digest.update(chunk)
            total += len(chunk)
        return total, digest.hexdigest()

    async def _echo(self, request: Request) -> Response:
        total, digest = await self._read_body(request)
        return JSONResponse(self._describe(request, total, digest))

    async def _slow(self, request: Request) -> Response:
        total, digest = await self._read_body(request)
        await asyncio.sleep(_query_int(request, "ms", 1000) / 1000.0)
        return JSONResponse(self._describe(request, total, digest))

    async def _status(self, request: Request) -> Response:
        await self._read_body(request)
        code = int(request.path_params["code"])
        if code in (204, 304) or code < 200:
            return Response(status_code=code)
        return Response(f"status {code}\n", status_code=code, media_type="text/plain")

    async def _stream(self, request: Request) -> Response:
        await self._read_body(request)
        chunks = _query_int(request, "chunks", 4)
        size = _query_int(request, "size", 1024)
        delay = _query_int(request, "delay_ms", 0) / 1000.0

        async def body() -> AsyncIterator[bytes]:
            for chunk in stream_payload(chunks, size):
                yield chunk
                if delay:
                    await asyncio.sleep(delay)

        return StreamingResponse(body(), media_type="application/octet-stream")

    async def _bytes(self, request: Request) -> Response:
        await self._read_body(request)
        size = _query_int(request, "size", 1024)
        return Response(_bytes_body(size), media_type="application/octet-stream")

    @staticmethod
    async def _reflect(receive: Any, send: Any) -> None:
        """Raw ASGI: Starlette's StreamingResponse would race us for ``receive()``."""
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")],
            }
        )
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            if body:
                await send({"type": "http.response.body", "body": body, "more_body": True})
            if not message.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _ws(self, websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") is not None:
                    await websocket.send_text(message["text"])
                elif message.get("bytes") is not None:
                    await websocket.send_bytes(message["bytes"])
        except WebSocketDisconnect:
            return

    def app(self) -> Any:
        routes = [
            Route("/slow", self._slow, methods=_ALL_METHODS),
            Route("/status/{code:int}", self._status, methods=_ALL_METHODS),
            Route("/stream", self._stream, methods=_ALL_METHODS),
            Route("/bytes", self._bytes, methods=_ALL_METHODS),
            WebSocketRoute("/ws", self._ws),
            Route("/{path:path}", self._echo, methods=_ALL_METHODS),
        ]
        inner = Starlette(routes=routes)
        name = self.name.encode()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] not in ("http", "websocket"):
                await inner(scope, receive, send)
                return
            self.record(
                Seen(
                    method=scope.get("method", "GET"),
                    path=scope["path"],
                    query=scope.get("query_string", b"").decode("latin-1"),
                    headers=_join_headers(
                        (k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
                    ),
                    protocol=scope["type"] + "/" + scope.get("http_version", ""),
                )
            )

            async def tagged_send(message: dict[str, Any]) -> None:
                if message["type"] in ("http.response.start", "websocket.accept"):
                    message = dict(message)
                    message["headers"] = [*message.get("headers", []), (b"x-backend", name)]
                await send(message)

            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if scope["type"] == "http" and scope["path"] == "/reflect":
                    await self._reflect(receive, tagged_send)
                else:
                    await inner(scope, receive, tagged_send)
            finally:
                self.in_flight -= 1

        return app

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> HttpBackend:
        sock = _listening_socket(self.host)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app(),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=75,
            timeout_graceful_shutdown=1,
            ws_max_size=64 * 1024 * 1024,
        )
        self._server = _QuietServer(config)
        server = self._server

        def run() -> None:
            asyncio.run(server.serve(sockets=[sock]))

        self._thread = threading.Thread(target=run, name=f"http-backend-{self.name}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"backend {self.name} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


# -- a thread running an asyncio loop -----------------------------------------------------------


class _LoopThread:
    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> None:
        self._thread.start()

    def call(self, coro: Any, timeout_s: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def serve(
        self, handler: Any, sock: socket.socket, ssl_ctx: ssl.SSLContext | None = None
    ) -> asyncio.Server:
        """Start an asyncio stream server on ``sock`` in this loop."""

        async def serve() -> asyncio.Server:
            return await asyncio.start_server(handler, sock=sock, ssl=ssl_ctx)

        server: asyncio.Server = self.call(serve())
        return server

    def stop_server(self, server: asyncio.Server | None) -> None:
        """Close ``server`` (if any), then stop the loop."""
        if server is not None:

            async def close() -> None:
                server.close()

            with contextlib.suppress(Exception):
                self.call(close())
        self.stop()

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.call(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


# -- HTTP/2 cleartext (prior knowledge) on the h2 library ---------------------------------------


@dataclass
class _H2Stream:
    stream_id: int
    headers: dict[str, str]
    body_len: int = 0
    digest: Any = field(default_factory=hashlib.sha256)
    trailers: dict[str, str] | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    chunks: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    counted: bool = True


class _H2Connection:
    def __init__(
        self, backend: H2cBackend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.backend = backend
        self.reader = reader
        self.writer = writer
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: backend.max_concurrent_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
            },
        )
        self.streams: dict[int, _H2Stream] = {}
        self.open_streams = 0
        self._window = asyncio.Event()

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def run(self) -> None:
        self.conn.initiate_connection()
        await self.flush()
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    await self.flush()
                    break
                for event in events:
                    self._on_event(event)
                await self.flush()
        except (ConnectionError, OSError):
            pass
        finally:
            for stream in self.streams.values():
                if stream.task is not None:
                    stream.task.cancel()
            self._window.set()
            self.writer.close()

    def _on_event(self, event: h2.events.Event) -> None:
        conn = self.conn
        if isinstance(event, h2.events.RequestReceived):
            headers = _join_headers(event.headers)
            stream = _H2Stream(event.stream_id, headers)
            self.streams[event.stream_id] = stream
            self.open_streams += 1
            self.backend._opened(self.open_streams)
            path, _, query = headers.get(":path", "/").partition("?")
            self.backend.record(
                Seen(headers.get(":method", ""), path, query, headers, protocol="h2")
            )
            if event.stream_ended is not None:
                stream.ended.set()
                stream.chunks.put_nowait(None)
            stream.task = asyncio.ensure_future(self._respond(stream, path, query))
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if event.flow_controlled_length:
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if stream is not None:
                stream.body_len += len(event.data)
                stream.digest.update(event.data)
                stream.chunks.put_nowait(event.data)
        elif isinstance(event, h2.events.TrailersReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.trailers = _join_headers(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None and not stream.ended.is_set():
                stream.ended.set()
                stream.chunks.put_nowait(None)
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                self._closed(stream)
                if stream.task is not None:
                    stream.task.cancel()
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self._window.set()
            self._window = asyncio.Event()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.writer.close()

    def _closed(self, stream: _H2Stream) -> None:
        if stream.counted:
            stream.counted = False
            self.open_streams -= 1

    # -- responses ------------------------------------------------------------------------

    async def _send_headers(
        self, stream: _H2Stream, status: int, extra: list[tuple[str, str]], end: bool = False
    ) -> None:
        headers = [(":status", str(status)), ("x-backend", self.backend.name), *extra]
        self.conn.send_headers(stream.stream_id, headers, end_stream=end)
        if end:
            self._finish(stream)
        await self.flush()

    def _finish(self, stream: _H2Stream) -> None:
        self._closed(stream)
        self.streams.pop(stream.stream_id, None)

    async def _send_data(self, stream: _H2Stream, data: bytes) -> None:
        view = memoryview(data)
        while view:
            window = self.conn.local_flow_control_window(stream.stream_id)
            size = min(window, len(view), self.conn.max_outbound_frame_size)
            if size <= 0:
                await self._window.wait()
                continue
            self.conn.send_data(stream.stream_id, bytes(view[:size]))
            view = view[size:]
            await self.flush()

    async def _end(self, stream: _H2Stream, trailers: list[tuple[str, str]] | None = None) -> None:
        if trailers:
            self.conn.send_headers(stream.stream_id, trailers, end_stream=True)
        else:
            self.conn.end_stream(stream.stream_id)
        self._finish(stream)
        await self.flush()

    async def _respond(self, stream: _H2Stream, path: str, query: str) -> None:
        try:
            await self._dispatch(stream, path, parse_qs(query))
        except (asyncio.CancelledError, h2.exceptions.StreamClosedError, ConnectionError):
            self._finish(stream)
        except Exception:
            self._finish(stream)
            with contextlib.suppress(Exception):
                self.conn.reset_stream(stream.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
                await self.flush()

    async def _body(self, stream: _H2Stream) -> None:
        while await stream.chunks.get() is not None:
            pass

    async def _dispatch(self, stream: _H2Stream, path: str, query: dict[str, list[str]]) -> None:
        def q(name: str, default: int) -> int:
            try:
                return int(query.get(name, [default])[0])
            except ValueError:
                return default

        if path == "/reflect":
            await self._send_headers(stream, 200, [("content-type", "application/octet-stream")])
            while (chunk := await stream.chunks.get()) is not None:
                await self._send_data(stream, chunk)
            echoed = [(f"x-echo-{k}", v) for k, v in (stream.trailers or {}).items()]
            await self._end(stream, echoed or None)
            return
        await self._body(stream)
        if path == "/slow":
            await asyncio.sleep(q("ms", 1000) / 1000.0)
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            if code in (204, 304):
                await self._send_headers(stream, code, [], end=True)
                return
            body = f"status {code}\n".encode()
            await self._send_headers(
                stream, code, [("content-type", "text/plain"), ("content-length", str(len(body)))]
            )
            await self._send_data(stream, body)
            await self._end(stream)
            return
        if path == "/stream":
            await self._send_headers(stream, 200, [("content-type", "application/octet-stream")])
            delay = q("delay_ms", 0) / 1000.0
            for chunk in stream_payload(q("chunks", 4), q("size", 1024)):
                await self._send_data(stream, chunk)
                if delay:
                    await asyncio.sleep(delay)
            trailers = [("x-stream-trailer", "done")] if query.get("trailers") else None
            await self._end(stream, trailers)
            return
        description = {
            "backend": self.backend.name,
            "method": stream.headers.get(":method", ""),
            "path": path,
            "query": stream.headers.get(":path", "").partition("?")[2],
            "http_version": "2",
            "headers": {k: v for k, v in stream.headers.items() if not k.startswith(":")},
            "authority": stream.headers.get(":authority", ""),
            "body_bytes": stream.body_len,
            "body_sha256": stream.digest.hexdigest(),
            "trailers": stream.trailers,
        }
        body = json.dumps(description).encode()
        await self._send_headers(
            stream,
            200,
            [("content-type", "application/json"), ("content-length", str(len(body)))],
        )
        await self._send_data(stream, body)
        if path == "/trailers":
            await self._end(
                stream, [("x-trailer-one", "1"), ("x-trailer-backend", self.backend.name)]
            )
        else:
            await self._end(stream)


class H2cBackend(_Recorder):
    """A prior-knowledge HTTP/2 echo backend (see the module docstring)."""

    def __init__(self, name: str, *, max_concurrent_streams: int = 100) -> None:
        super().__init__()
        self.name = name
        self.max_concurrent_streams = max_concurrent_streams
        self.port = 0
        self.connections = 0
        self.max_concurrent_seen = 0
        self._loop = _LoopThread(f"h2c-backend-{name}")
        self._server: asyncio.Server | None = None

    def _opened(self, open_now: int) -> None:
        self.max_concurrent_seen = max(self.max_concurrent_seen, open_now)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await _H2Connection(self, reader, writer).run()

    def start(self) -> H2cBackend:
        self._loop.start()
        sock = _listening_socket()
        self.port = sock.getsockname()[1]
        self._server = self._loop.serve(self._handle, sock)
        return self

    def stop(self) -> None:
        self._loop.stop_server(self._server)


# -- gRPC (grpcio, generic handlers over raw bytes) ---------------------------------------------

GRPC_SERVICE = "isthmus.test.Echo"
GRPC_OTHER_SERVICE = "isthmus.test.Other"


class GrpcBackend(_Recorder):
    """gRPC methods over raw bytes:

    - ``Echo/Unary``: returns the request.
    - ``Echo/ServerStream``: the request is ``b"<count>:<text>"``; answers ``count`` messages
      ``b"<text>-<i>"``.
    - ``Echo/Bidi``: answers each message with ``b"echo:" + message``.
    - ``Echo/Sleep``: the request is a number of milliseconds; sleeps that long unless the
      call is cancelled or its deadline passes (``cancelled_sleeps`` counts those).
    - ``Echo/Fail``: FAILED_PRECONDITION with trailing metadata ``x-fail-reason: requested``.
    - ``Other/Unary``: returns ``b"other:" + request``.

    Every call sends initial metadata ``x-backend: <name>``.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.port = 0
        self.cancelled_sleeps = 0
        self._server: grpc.Server | None = None

    def _begin(self, method: str, context: grpc.ServicerContext) -> None:
        metadata = {m.key: m.value for m in context.invocation_metadata()}
        self.record(Seen("POST", method, "", metadata, protocol="grpc"))
        context.send_initial_metadata((("x-backend", self.name),))

    def _unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._begin(f"/{GRPC_SERVICE}/Unary", context)
        return request

    def _server_stream(self, request: bytes, context: grpc.ServicerContext) -> Iterable[bytes]:
        self._begin(f"/{GRPC_SERVICE}/ServerStream", context)
        count, _, text = request.partition(b":")
        for i in range(int(count)):
            yield text + b"-" + str(i).encode()

    def _bidi(self, requests: Iterable[bytes], context: grpc.ServicerContext) -> Iterable[bytes]:
        self._begin(f"/{GRPC_SERVICE}/Bidi", context)
        for message in requests:
            yield b"echo:" + message

    def _sleep(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._begin(f"/{GRPC_SERVICE}/Sleep", context)
        until = time.monotonic() + int(request) / 1000.0
        while time.monotonic() < until:
            if not context.is_active():
                self.cancelled_sleeps += 1
                return b""
            time.sleep(0.01)
        return b"slept"

    def _fail(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._begin(f"/{GRPC_SERVICE}/Fail", context)
        context.set_trailing_metadata((("x-fail-reason", "requested"),))
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "asked to fail")
        raise AssertionError("unreachable")

    def _other(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._begin(f"/{GRPC_OTHER_SERVICE}/Unary", context)
        return b"other:" + request

    def start(self) -> GrpcBackend:
        server = grpc.server(ThreadPoolExecutor(max_workers=16))
        echo = grpc.method_handlers_generic_handler(
            GRPC_SERVICE,
            {
                "Unary": grpc.unary_unary_rpc_method_handler(self._unary),
                "ServerStream": grpc.unary_stream_rpc_method_handler(self._server_stream),
                "Bidi": grpc.stream_stream_rpc_method_handler(self._bidi),
                "Sleep": grpc.unary_unary_rpc_method_handler(self._sleep),
                "Fail": grpc.unary_unary_rpc_method_handler(self._fail),
            },
        )
        other = grpc.method_handlers_generic_handler(
            GRPC_OTHER_SERVICE, {"Unary": grpc.unary_unary_rpc_method_handler(self._other)}
        )
        server.add_generic_rpc_handlers((echo, other))
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0.5).wait(5)


# -- TLS line echo, for passthrough -------------------------------------------------------------


class TlsEchoBackend:
    """A TLS server with its own certificate: for each line ``x`` it answers ``<name>:x``."""

    def __init__(self, name: str, cert_pem: bytes, key_pem: bytes) -> None:
        self.name = name
        self.port = 0
        self.connections = 0
        self._cert_pem = cert_pem
        self._key_pem = key_pem
        self._loop = _LoopThread(f"tls-backend-{name}")
        self._server: asyncio.Server | None = None

    def _context(self, tmpdir: str) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert = os.path.join(tmpdir, "cert.pem")
        key = os.path.join(tmpdir, "key.pem")
        with open(cert, "wb") as f:
            f.write(self._cert_pem)
        with open(key, "wb") as f:
            f.write(self._key_pem)
        ctx.load_cert_chain(cert, key)
        return ctx

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while line := await reader.readline():
                writer.write(self.name.encode() + b":" + line)
                await writer.drain()
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            writer.close()

    def start(self) -> TlsEchoBackend:
        with tempfile.TemporaryDirectory() as tmpdir:
            ctx = self._context(tmpdir)
        self._loop.start()
        sock = _listening_socket()
        self.port = sock.getsockname()[1]
        self._server = self._loop.serve(self._handle, sock, ctx)
        return self

    def stop(self) -> None:
        self._loop.stop_server(self._server)
