"""RequestMirror: a copy of the request goes to another backend; its answer is dropped.

A mirror is an ordinary :class:`~gateway.proxy.exchange.Exchange` whose downstream is a
:class:`NullStream`. The primary exchange tees its request body into it. A mirror never
slows the request it copies: when the mirror's upstream cannot keep up, the stream marks
itself ``lagging`` and the primary drops it.
"""

from __future__ import annotations

from gateway.codec.messages import Headers, RequestHead, ResponseHead
from gateway.transport.streams import DownstreamInfo, TunnelSink, TunnelSource


class NullStream:
    """A downstream that discards the response."""

    __slots__ = ("info", "lagging", "request")

    write_paused = False

    def __init__(self, request: RequestHead, info: DownstreamInfo) -> None:
        self.request = request
        self.info = info
        self.lagging = False

    def send_head(self, head: ResponseHead) -> None:
        pass

    def send_data(self, data: bytes) -> None:
        pass

    def send_end(self, trailers: Headers | None = None) -> None:
        pass

    def send_interim(self, head: ResponseHead) -> None:
        pass

    def flush(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_body(self) -> None:
        self.lagging = True

    def resume_body(self) -> None:
        self.lagging = False

    def start_tunnel(self, sink: TunnelSink) -> TunnelSource | None:
        return None
