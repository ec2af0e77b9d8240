"""Protocol-neutral request and response heads.

Both downstream codecs (HTTP/1.1 and HTTP/2) produce a :class:`RequestHead`; both upstream
codecs consume one. Header names are lower-case bytes; pseudo-headers are not in ``headers``
but in the named attributes. These are mutable on purpose: filters rewrite them in place on
the request path and the response path, and the object is owned by one request.
"""

from __future__ import annotations

Headers = list[tuple[bytes, bytes]]

# Connection-specific headers (RFC 9110 §7.6.1, RFC 9113 §8.2.2): never forwarded.
HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"te",
        b"trailer",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)


class RequestHead:
    """The head of a request as the proxy sees it.

    ``path`` is the request target in origin form, query included. ``authority`` is the
    Host header (HTTP/1.1) or ``:authority`` (HTTP/2). ``content_length`` is ``None`` when the
    length is not known up front (chunked, or HTTP/2 without the header).
    """

    __slots__ = (
        "authority",
        "content_length",
        "end_stream",
        "headers",
        "method",
        "path",
        "scheme",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        method: str,
        path: str,
        authority: str,
        headers: Headers,
        *,
        scheme: str = "http",
        version: str = "1.1",
        content_length: int | None = None,
        end_stream: bool = False,
        upgrade: bytes | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.authority = authority
        self.headers = headers
        self.scheme = scheme
        self.version = version
        self.content_length = content_length
        self.end_stream = end_stream
        self.upgrade = upgrade

    def get(self, name: bytes) -> bytes | None:
        """First value of header ``name`` (lower-case), or None."""
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def __repr__(self) -> str:
        return f"<RequestHead {self.method} {self.authority}{self.path} HTTP/{self.version}>"


class ResponseHead:
    __slots__ = ("content_length", "end_stream", "headers", "status")

    def __init__(
        self,
        status: int,
        headers: Headers,
        *,
        content_length: int | None = None,
        end_stream: bool = False,
    ) -> None:
        self.status = status
        self.headers = headers
        self.content_length = content_length
        self.end_stream = end_stream

    def get(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def __repr__(self) -> str:
        return f"<ResponseHead {self.status}>"


def strip_hop_by_hop(headers: Headers) -> Headers:
    """Drop connection-specific headers, including those named in ``Connection``."""
    named: set[bytes] = set()
    for k, v in headers:
        if k == b"connection":
            named.update(t.strip().lower() for t in v.split(b","))
    if not named:
        return [(k, v) for k, v in headers if k not in HOP_BY_HOP]
    return [(k, v) for k, v in headers if k not in HOP_BY_HOP and k not in named]
