"""Upstream failures, each with the Envoy-style response flag it is logged and counted with.

``UF`` upstream connection failure, ``UC`` upstream connection termination, ``UT`` upstream
request timeout, ``UH`` no healthy upstream, ``UR`` upstream reset (remote reset).
"""

from __future__ import annotations

from typing import ClassVar


class UpstreamError(Exception):
    flag: ClassVar[str] = "UC"
    status: ClassVar[int] = 503

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or type(self).__name__)
        self.reason = reason or type(self).__name__


class ConnectFailure(UpstreamError):
    flag: ClassVar[str] = "UF"
    status: ClassVar[int] = 503


class ConnectionTerminated(UpstreamError):
    flag: ClassVar[str] = "UC"
    status: ClassVar[int] = 503


class StreamReset(UpstreamError):
    flag: ClassVar[str] = "UR"
    status: ClassVar[int] = 503


class UpstreamTimeout(UpstreamError):
    flag: ClassVar[str] = "UT"
    status: ClassVar[int] = 504


class NoHealthyUpstream(UpstreamError):
    flag: ClassVar[str] = "UH"
    status: ClassVar[int] = 503


class BadResponse(UpstreamError):
    flag: ClassVar[str] = "UPE"
    status: ClassVar[int] = 502
