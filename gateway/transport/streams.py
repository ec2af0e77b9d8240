"""The seam between the transports and the proxy: a downstream request stream and its handler.

A transport (HTTP/1.1 or HTTP/2, plain or TLS) turns each request into a
:class:`ServerStream` and asks the :class:`RequestHandlerFactory` for a :class:`StreamHandler`.
From then on the transport pushes request body events into the handler, and the handler
pushes the response through the stream. Both directions are callbacks, not awaits: a request
that finds an idle upstream connection crosses the proxy without a task switch.

Flow control is symmetric: ``ServerStream.pause_body()`` stops reading the request body
(HTTP/1.1: pause the socket; HTTP/2: withhold WINDOW_UPDATEs), and ``write_paused`` turns
true when the client reads slowly, after which the transport calls ``on_writable`` once it
has drained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.codec.messages import Headers, RequestHead, ResponseHead
from gateway.codec.tunnel import TunnelSink, TunnelSource

__all__ = ["DownstreamInfo", "RequestHandlerFactory", "ServerStream", "StreamHandler",
           "TunnelSink", "TunnelSource"]  # fmt: skip


@dataclass(slots=True)
class DownstreamInfo:
    """Facts about the downstream connection a request came on."""

    listener_port: int
    remote_address: str
    remote_port: int
    tls: bool = False
    sni: str | None = None
    alpn: str | None = None
    protocol: str = "http"  # http (HTTP/1.x), http2, tcp
    # The peer's SPIFFE ID (spiffe://...) when it authenticated with mTLS, else None.
    peer_principal: str | None = None


class StreamHandler(Protocol):
    """What the proxy implements per request; the transport calls it."""

    def on_body(self, data: bytes) -> None: ...

    def on_body_end(self, trailers: Headers | None) -> None: ...

    def on_abort(self) -> None:
        """The client went away or reset the stream: stop and release everything."""
        ...

    def on_writable(self) -> None:
        """The stream's write side drained after ``write_paused`` was seen true."""
        ...


class ServerStream(Protocol):
    """What the transport implements per request; the proxy calls it."""

    request: RequestHead
    info: DownstreamInfo

    @property
    def write_paused(self) -> bool: ...

    def send_head(self, head: ResponseHead) -> None: ...

    def send_data(self, data: bytes) -> None: ...

    def send_end(self, trailers: Headers | None = None) -> None: ...

    def flush(self) -> None:
        """Write what the stream holds back. Called when the producer of the response has
        nothing more for now (the end of an upstream read)."""
        ...

    def send_interim(self, head: ResponseHead) -> None:
        """A 1xx response (100 Continue, 103 Early Hints)."""
        ...

    def abort(self) -> None:
        """End the stream abnormally (HTTP/2 RST_STREAM, HTTP/1.1 close)."""
        ...

    def pause_body(self) -> None: ...

    def resume_body(self) -> None: ...

    def start_tunnel(self, sink: TunnelSink) -> TunnelSource | None:
        """After a 101 response: hand the connection's raw bytes to ``sink`` both ways.
        Returns None when the transport cannot tunnel (HTTP/2)."""
        ...


class RequestHandlerFactory(Protocol):
    """The proxy engine, as the transports see it."""

    def on_request(self, stream: ServerStream) -> StreamHandler: ...
