"""Answers the proxy makes itself: 404 no route, 500 no backend, redirects, errors.

:class:`LocalReplyHandler` is a :class:`~gateway.transport.streams.StreamHandler` that sends
its reply at once and drops whatever request body follows; :class:`DelayedReplyHandler`
sends it after a delay (a Fault that both delays and aborts), unless the client leaves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gateway.codec.messages import Headers, ResponseHead
from gateway.filters.base import LocalReply
from gateway.transport.streams import ServerStream


def send_reply(stream: ServerStream, reply: LocalReply) -> None:
    headers: Headers = list(reply.headers)
    body = reply.body
    if body and not any(k == b"content-type" for k, _ in headers):
        headers.append((b"content-type", b"text/plain"))
    headers.append((b"content-length", str(len(body)).encode()))
    stream.send_head(ResponseHead(reply.status, headers, content_length=len(body),
                                  end_stream=not body))  # fmt: skip
    if body:
        stream.send_data(body)
        stream.send_end(None)


class LocalReplyHandler:
    __slots__ = ()

    def __init__(
        self,
        stream: ServerStream,
        reply: LocalReply,
        record: Callable[[ServerStream, LocalReply, float], None],
        started: float,
    ) -> None:
        send_reply(stream, reply)
        record(stream, reply, (time.monotonic() - started) * 1000.0)

    def on_body(self, data: bytes) -> None:
        pass

    def on_body_end(self, trailers: Headers | None) -> None:
        pass

    def on_abort(self) -> None:
        pass

    def on_writable(self) -> None:
        pass


class DelayedReplyHandler:
    __slots__ = ("_timer",)

    def __init__(
        self,
        stream: ServerStream,
        reply: LocalReply,
        record: Callable[[ServerStream, LocalReply, float], None],
        started: float,
        delay_s: float,
    ) -> None:
        self._timer: asyncio.TimerHandle | None = None

        def send() -> None:
            self._timer = None
            LocalReplyHandler(stream, reply, record, started)

        self._timer = asyncio.get_running_loop().call_later(delay_s, send)

    def on_body(self, data: bytes) -> None:
        pass

    def on_body_end(self, trailers: Headers | None) -> None:
        pass

    def on_abort(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def on_writable(self) -> None:
        pass
