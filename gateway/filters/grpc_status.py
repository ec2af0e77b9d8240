"""Local replies in gRPC form, and the mapping between HTTP and gRPC statuses.

Used by the filters that answer on their own (``fault``, ``rate_limit``): a gRPC client
(``content-type: application/grpc``) expects HTTP 200 with ``grpc-status`` and
``grpc-message``, sent as a trailers-only response (one HEADERS frame that ends the stream).
The mappings are the ones gRPC documents (``doc/http-grpc-status-mapping.md``) and Envoy
uses for its own local replies.
"""

from __future__ import annotations

from gateway.codec.messages import Headers, RequestHead
from gateway.filters.base import LocalReply

UNKNOWN = 2
UNAVAILABLE = 14

# HTTP status -> gRPC code for an HTTP error sent to a gRPC client; others are UNKNOWN.
_HTTP_TO_GRPC = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14}
# gRPC code -> HTTP status for a gRPC error sent to a plain HTTP client.
_GRPC_TO_HTTP = {
    0: 200,
    1: 499,
    2: 500,
    3: 400,
    4: 504,
    5: 404,
    6: 409,
    7: 403,
    8: 429,
    9: 400,
    10: 409,
    11: 400,
    12: 501,
    13: 500,
    14: 503,
    15: 500,
    16: 401,
}


def is_grpc(request: RequestHead) -> bool:
    content_type = request.get(b"content-type")
    return content_type is not None and content_type.startswith(b"application/grpc")


def grpc_code_for(http_status: int) -> int:
    return _HTTP_TO_GRPC.get(http_status, UNKNOWN)


def http_status_for(grpc_code: int) -> int:
    return _GRPC_TO_HTTP.get(grpc_code, 500)


def encode_message(message: str) -> bytes:
    """``grpc-message`` is percent-encoded UTF-8: bytes outside printable ASCII, and ``%``."""
    out = bytearray()
    for byte in message.encode("utf-8"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


def grpc_reply(code: int, message: str, flag: str, headers: Headers | None = None) -> LocalReply:
    """A trailers-only gRPC answer: 200 with ``grpc-status`` ``code`` and no body."""
    return LocalReply(
        200,
        [
            (b"content-type", b"application/grpc"),
            (b"grpc-status", str(code).encode()),
            (b"grpc-message", encode_message(message)),
            *(headers or ()),
        ],
        flag=flag,
    )
