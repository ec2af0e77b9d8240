"""Test helpers for tracing: a local span receiver, fixed trace ids and request heads."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

from gateway.codec.messages import RequestHead


@dataclass
class Received:
    path: str
    content_type: str
    body: bytes


class Receiver:
    """An HTTP collector on 127.0.0.1 that keeps every POST and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        # While cleared, every POST waits (a stalled collector); set by default.
        self.gate = threading.Event()
        self.gate.set()
        self.received: list[Received] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                outer.gate.wait(30)
                outer.received.append(
                    Received(self.path, self.headers.get("content-type", ""), body)
                )
                self.send_response(outer.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@contextmanager
def receiver(status: int = 200) -> Iterator[Receiver]:
    with Receiver(status) as r:
        yield r


class FixedTraceIds(IdGenerator):
    """Hands out the given trace ids in order (random span ids)."""

    def __init__(self, trace_ids: Iterable[int]) -> None:
        self._trace_ids = iter(trace_ids)
        self._spans = RandomIdGenerator()

    def generate_trace_id(self) -> int:
        return next(self._trace_ids)

    def generate_span_id(self) -> int:
        return self._spans.generate_span_id()


def evenly_spread_trace_ids(n: int = 100) -> list[int]:
    """``n`` trace ids whose low 64 bits sit in the middle of ``n`` equal slices of the
    64-bit range: a ratio sampler at ``k/n`` samples exactly the first ``k`` of them."""
    return [(i + 1) << 64 | ((2 * i + 1) << 64) // (2 * n) for i in range(n)]


def head(
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    method: str = "GET",
    path: str = "/api/items?id=7",
    authority: str = "shop.example:8080",
    scheme: str = "http",
    version: str = "1.1",
) -> RequestHead:
    return RequestHead(method, path, authority, list(headers or []), scheme=scheme, version=version)
