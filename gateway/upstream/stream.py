"""The seam between an upstream connection and the request that uses it.

An :class:`UpstreamStream` is one request on an upstream connection (HTTP/1.1 or HTTP/2);
the proxy's exchange implements :class:`UpstreamHandler` and receives the response through
callbacks. Flow control mirrors the downstream seam: ``write_paused`` says the upstream is
not taking request bytes, ``pause_response`` stops reading the response.
"""

from __future__ import annotations

from typing import Protocol

from gateway.codec.messages import Headers, RequestHead, ResponseHead
from gateway.upstream.errors import UpstreamError


class UpstreamHandler(Protocol):
    def on_response(self, head: ResponseHead) -> None: ...

    def on_response_data(self, data: bytes) -> None: ...

    def on_response_end(self, trailers: Headers | None) -> None: ...

    def on_upstream_error(self, error: UpstreamError) -> None:
        """The stream failed before its response ended (reset, closed, bad response)."""
        ...

    def on_upstream_writable(self) -> None: ...

    def on_upstream_read_done(self) -> None:
        """The upstream connection finished processing one read: flush what was produced."""
        ...


class UpstreamStream(Protocol):
    @property
    def write_paused(self) -> bool: ...

    def send_request(self, head: RequestHead, end_stream: bool) -> None: ...

    def send_data(self, data: bytes) -> None: ...

    def send_end(self, trailers: Headers | None) -> None: ...

    def pause_response(self) -> None: ...

    def resume_response(self) -> None: ...

    def abort(self) -> None: ...
