"""Sans-IO HTTP/1.1 request parsing for the downstream side, on httptools (llhttp).

``H1RequestParser.feed(data)`` parses bytes and calls the :class:`H1RequestSink` it was given:
``on_request`` with a :class:`RequestHead`, then ``on_body`` per chunk and ``on_request_end``
with trailers. Pipelined requests arrive back to back; the transport decides when to act on
them. Any framing that a proxy could be smuggled through is refused with :class:`H1Error`
(DESIGN.md §4): both Content-Length and Transfer-Encoding, repeated Content-Length, a
Transfer-Encoding other than a lone ``chunked``, obs-fold, CR/LF/NUL in fields, bad chunk
sizes, a missing or repeated Host, and header blocks over the size limit.

Called by ``gateway.transport.http1_server``. Never touches a socket.
"""

from __future__ import annotations

from typing import Protocol

import httptools

from gateway.codec.errors import H1Error
from gateway.codec.messages import Headers, RequestHead

_CL, _TE, _HOST = 1, 2, 3
_FRAMING = {b"content-length": _CL, b"transfer-encoding": _TE, b"host": _HOST}


class H1RequestSink(Protocol):
    def on_request(self, head: RequestHead) -> None: ...

    def on_body(self, data: bytes) -> None: ...

    def on_request_end(self, trailers: Headers | None) -> None: ...


class H1RequestParser:
    """One per downstream connection. Not thread-safe; not reusable across connections."""

    __slots__ = (
        "_begun",
        "_cl_count",
        "_content_length",
        "_header_bytes",
        "_headers",
        "_host",
        "_host_count",
        "_in_headers",
        "_max_header_bytes",
        "_parser",
        "_raw_header_bytes",
        "_sink",
        "_te",
        "_trailers",
        "_url",
        "scheme",
        "upgrade_offset",
    )

    def __init__(self, sink: H1RequestSink, *, max_header_bytes: int, scheme: str = "http") -> None:
        self._sink = sink
        self._max_header_bytes = max_header_bytes
        self.scheme = scheme
        self._parser = httptools.HttpRequestParser(self)
        self._reset_message()
        self._in_headers = False
        self._begun = 0
        # Set when an Upgrade request's head is complete: bytes of the feed from this offset
        # on belong to the tunnel, not to HTTP.
        self.upgrade_offset: int | None = None

    def _reset_message(self) -> None:
        self._url = b""
        self._headers: Headers = []
        self._header_bytes = 0
        self._raw_header_bytes = 0
        self._cl_count = 0
        self._content_length: int | None = None
        self._te: bytes | None = None
        self._host_count = 0
        self._host: bytes | None = None
        self._trailers: Headers | None = None

    # -- input -------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Parse ``data``. Raises :class:`H1Error` on anything malformed or refused."""
        in_head_before = self._in_headers
        begun_before = self._begun
        self._feed(data)
        if in_head_before and self._in_headers and self._begun == begun_before:
            # The whole read went into one unfinished head. httptools buffers a partial field
            # itself, so bound the raw bytes too (fields are counted exactly in on_header).
            self._raw_header_bytes += len(data)
            if self._raw_header_bytes > self._max_header_bytes + 8192:
                raise H1Error(431, "request header fields too large")

    def _feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.upgrade_offset = int(exc.args[0])
        except httptools.HttpParserCallbackError as exc:
            inner = exc.__context__
            if isinstance(inner, H1Error):
                raise inner from None
            raise H1Error(400, f"bad request: {exc}") from None
        except httptools.HttpParserError as exc:
            raise H1Error(400, f"bad request: {exc}") from None

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset_message()
        self._in_headers = True
        self._begun += 1

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._max_header_bytes:
            raise H1Error(414, "request URI too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp (strict) already refuses CR, LF and NUL in names and values, and obs-fold.
        if not self._in_headers:
            # Fields after the body of a chunked message: trailers.
            if self._trailers is None:
                self._trailers = []
            self._trailers.append((name.lower(), value))
            return
        size = self._header_bytes + len(name) + len(value) + 4
        self._header_bytes = size
        if size > self._max_header_bytes:
            raise H1Error(431, "request header fields too large")
        lname = name.lower()
        special = _FRAMING.get(lname)
        if special is not None:
            self._framing_header(special, value)
        self._headers.append((lname, value))

    def _framing_header(self, kind: int, value: bytes) -> None:
        if kind == _CL:
            self._cl_count += 1
            if self._cl_count > 1:
                raise H1Error(400, "repeated Content-Length")
            if not value.isdigit() or len(value) > 18:
                raise H1Error(400, "invalid Content-Length")
            self._content_length = int(value)
        elif kind == _TE:
            if self._te is not None:
                raise H1Error(400, "repeated Transfer-Encoding")
            self._te = value
        else:
            self._host_count += 1
            self._host = value

    def on_headers_complete(self) -> None:
        self._in_headers = False
        parser = self._parser
        version = parser.get_http_version()
        if self._te is not None:
            if self._te.strip().lower() != b"chunked":
                raise H1Error(400, "unsupported Transfer-Encoding")
            if self._cl_count:
                raise H1Error(400, "both Content-Length and Transfer-Encoding")
            if version == "1.0":
                raise H1Error(400, "Transfer-Encoding in an HTTP/1.0 request")
        if self._host_count > 1 or (self._host_count == 0 and version == "1.1"):
            raise H1Error(400, "exactly one Host header is required")
        authority = self._host.decode("latin-1") if self._host is not None else ""
        url = self._url.decode("latin-1")
        method = parser.get_method().decode("ascii")
        if not url.startswith("/"):
            url, authority = _absolute_form(url, authority, method)
        chunked = self._te is not None
        upgrade: bytes | None = None
        if parser.should_upgrade():
            upgrade = _header(self._headers, b"upgrade")
        end = not chunked and not self._content_length
        head = RequestHead(
            method,
            url,
            authority,
            self._headers,
            scheme=self.scheme,
            version=version,
            content_length=None if chunked else (self._content_length or 0),
            end_stream=end,
            upgrade=upgrade,
        )
        self._sink.on_request(head)

    def on_body(self, body: bytes) -> None:
        self._sink.on_body(body)

    def on_message_complete(self) -> None:
        self._sink.on_request_end(self._trailers)

    def keep_alive(self) -> bool:
        """Whether the last request allows the connection to be reused."""
        return bool(self._parser.should_keep_alive())


def _header(headers: Headers, name: bytes) -> bytes | None:
    for k, v in headers:
        if k == name:
            return v
    return None


def _absolute_form(url: str, authority: str, method: str) -> tuple[str, str]:
    """Turn an absolute-form target into origin form; the URI's authority wins (RFC 9112 §3.2.2)."""
    if method == "CONNECT" or url == "*":
        return url, authority
    try:
        parsed = httptools.parse_url(url.encode("latin-1"))
    except httptools.HttpParserInvalidURLError:
        raise H1Error(400, "invalid request target") from None
    if parsed.host is None:
        raise H1Error(400, "invalid request target")
    host = parsed.host.decode("latin-1")
    if parsed.port is not None:
        host = f"{host}:{parsed.port}"
    path = (parsed.path or b"/").decode("latin-1")
    if parsed.query is not None:
        path = f"{path}?{parsed.query.decode('latin-1')}"
    return path, host
