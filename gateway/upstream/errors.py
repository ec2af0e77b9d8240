"""Upstream failures, each with the Envoy-style response flag it is logged and counted with.

``UF`` upstream connection failure, ``UC`` upstream connection termination, ``UT`` upstream
request timeout, ``UH`` no healthy upstream, ``UR`` upstream reset (remote reset).
"""

from __future__ import annotations


class UpstreamError(Exception):
    flag = "UC"
    status = 503

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or type(self).__name__)
        self.reason = reason or type(self).__name__


class ConnectFailure(UpstreamError):
    flag = "UF"
    status = 503


class ConnectionTerminated(UpstreamError):
    flag = "UC"
    status = 503


class StreamReset(UpstreamError):
    flag = "UR"
    status = 503


class UpstreamTimeout(UpstreamError):
    flag = "UT"
    status = 504


class NoHealthyUpstream(UpstreamError):
    flag = "UH"
    status = 503


class BadResponse(UpstreamError):
    flag = "UPE"
    status = 502
