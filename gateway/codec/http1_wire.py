"""HTTP/1.1 serialisation: heads and chunked framing, for both directions.

Pure functions from messages to bytes. Called by the downstream and upstream HTTP/1.1
transports. Status lines are precomputed because they are on every response.
"""

from __future__ import annotations

from http import HTTPStatus

from gateway.codec.messages import Headers

_STATUS_LINES: dict[int, bytes] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("ascii") for s in HTTPStatus
}

CHUNK_END = b"0\r\n\r\n"


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} Unknown\r\n".encode("ascii")
    return line


def encode_response_head(status: int, headers: Headers) -> bytes:
    parts = [status_line(status)]
    for k, v in headers:
        parts.append(k + b": " + v + b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def encode_request_head(method: str, target: str, headers: Headers) -> bytes:
    parts = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1")]
    for k, v in headers:
        parts.append(k + b": " + v + b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def encode_last_chunk(trailers: Headers | None) -> bytes:
    if not trailers:
        return CHUNK_END
    parts = [b"0\r\n"]
    for k, v in trailers:
        parts.append(k + b": " + v + b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def simple_response(
    status: int, body: bytes, headers: Headers | None = None, *, close: bool = False
) -> bytes:
    """A complete response made by the proxy itself (errors, redirects)."""
    out: Headers = list(headers or ())
    if not any(k == b"content-type" for k, _ in out) and body:
        out.append((b"content-type", b"text/plain"))
    out.append((b"content-length", str(len(body)).encode()))
    if close:
        out.append((b"connection", b"close"))
    return encode_response_head(status, out) + body
