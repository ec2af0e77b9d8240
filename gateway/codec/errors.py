"""Protocol errors raised by the sans-IO codecs.

Each error carries what the caller must put on the wire: an HTTP status for HTTP/1.1, an
HTTP/2 error code for a stream or connection error. Callers map them to bytes; the codecs
never write.
"""

from __future__ import annotations


class CodecError(Exception):
    """Base class for every codec error."""


class H1Error(CodecError):
    """A malformed or refused HTTP/1.1 message. The connection is answered with ``status``
    and closed, because its framing can no longer be trusted."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class H2StreamError(CodecError):
    """A stream-level HTTP/2 error: the stream is reset with ``error_code``."""

    def __init__(self, stream_id: int, error_code: int, reason: str) -> None:
        super().__init__(reason)
        self.stream_id = stream_id
        self.error_code = error_code
        self.reason = reason


class H2ConnectionError(CodecError):
    """A connection-level HTTP/2 error: GOAWAY with ``error_code`` and close."""

    def __init__(self, error_code: int, reason: str) -> None:
        super().__init__(reason)
        self.error_code = error_code
        self.reason = reason
