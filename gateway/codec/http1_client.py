"""Sans-IO HTTP/1.1 response parsing for the upstream side, on httptools.

``H1ResponseParser.feed(data)`` calls the :class:`H1ResponseSink`: ``on_response`` with a
:class:`ResponseHead` (1xx interim responses included, flagged by status), ``on_body`` per
chunk, ``on_response_end`` with trailers. Responses to HEAD and 101 Switching Protocols end
at their head: the caller says so with ``expect_no_body``/``expect_upgrade`` before feeding.
Called by ``gateway.upstream.http1``.
"""

from __future__ import annotations

from typing import Protocol

import httptools

from gateway.codec.errors import H1Error
from gateway.codec.messages import Headers, ResponseHead


class H1ResponseSink(Protocol):
    def on_response(self, head: ResponseHead) -> None: ...

    def on_body(self, data: bytes) -> None: ...

    def on_response_end(self, trailers: Headers | None) -> None: ...


class H1ResponseParser:
    __slots__ = (
        "_chunked",
        "_cl",
        "_header_bytes",
        "_headers",
        "_in_headers",
        "_max_header_bytes",
        "_parser",
        "_sink",
        "_status",
        "_trailers",
        "done",
        "no_body",
        "upgraded_offset",
    )

    def __init__(self, sink: H1ResponseSink, *, max_header_bytes: int = 64 * 1024) -> None:
        self._sink = sink
        self._max_header_bytes = max_header_bytes
        self._parser = httptools.HttpResponseParser(self)
        self._headers: Headers = []
        self._trailers: Headers | None = None
        self._header_bytes = 0
        self._in_headers = False
        self._status = 0
        self.no_body = False
        self.done = False
        self.upgraded_offset: int | None = None

    def reset(self) -> None:
        """Ready for the next response on the same connection."""
        self.done = False
        self.no_body = False

    def expect_no_body(self) -> None:
        """The request was HEAD: the response ends with its head whatever it says."""
        self.no_body = True

    def feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.upgraded_offset = int(exc.args[0])
        except _StopAtHead:
            pass
        except httptools.HttpParserCallbackError as exc:
            inner = exc.__context__
            if isinstance(inner, _StopAtHead):
                return
            if isinstance(inner, H1Error):
                raise inner from None
            raise H1Error(502, f"bad upstream response: {exc}: {inner!r}") from None
        except httptools.HttpParserError as exc:
            raise H1Error(502, f"bad upstream response: {exc}") from None

    def keep_alive(self) -> bool:
        return bool(self._parser.should_keep_alive())

    # -- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._cl: int | None = None
        self._chunked = False
        self._headers = []
        self._trailers = None
        self._header_bytes = 0
        self._in_headers = True

    def on_status(self, status: bytes) -> None:
        pass

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_headers:
            if self._trailers is None:
                self._trailers = []
            self._trailers.append((name.lower(), value))
            return
        size = self._header_bytes + len(name) + len(value) + 4
        self._header_bytes = size
        if size > self._max_header_bytes:
            raise H1Error(502, "upstream response headers too large")
        lname = name.lower()
        if lname == b"content-length":
            if value.isdigit():
                self._cl = int(value)
        elif lname == b"transfer-encoding":
            self._chunked = True
        self._headers.append((lname, value))

    def on_headers_complete(self) -> None:
        self._in_headers = False
        status = self._parser.get_status_code()
        chunked = self._chunked
        cl = None if chunked else self._cl
        no_body = self.no_body or status == 204 or status == 304 or 100 <= status < 200
        head = ResponseHead(
            status,
            self._headers,
            content_length=cl,
            end_stream=no_body or cl == 0,
        )
        self._sink.on_response(head)
        if self.no_body and status >= 200:
            # llhttp would wait for the body Content-Length announces; a HEAD response has none.
            self.done = True
            self._sink.on_response_end(None)
            raise _StopAtHead

    def on_body(self, body: bytes) -> None:
        self._sink.on_body(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            return  # interim response; the final one follows
        self.done = True
        self._sink.on_response_end(self._trailers)


class _StopAtHead(Exception):
    """Unwinds the parser after a bodiless response; the parser is not reused after it."""
