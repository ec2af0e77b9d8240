"""One access-log record, and the cheap formatting of its start time.

The proxy builds one :class:`AccessLogEntry` per finished request and hands it to
:class:`gateway.telemetry.access_log.AccessLogger`; the logger's writer thread encodes it as
one JSON line. Building the record is the only access-log work on the event loop, so it is a
plain msgspec Struct (no validation, not tracked by the garbage collector).

Field names are the JSON keys, and they are those of Istio's default JSON access-log format
(``meshConfig.accessLogEncoding: JSON``) where that format has the field. The Envoy command
operator each key stands for:

===================================  ==========================================  =========
key                                  Envoy command operator                      JSON type
===================================  ==========================================  =========
``start_time``                       ``%START_TIME%`` (RFC 3339, ms, UTC)        string
``route_name``                       ``%ROUTE_NAME%``                            string/null
``method``                           ``%REQ(:METHOD)%``                          string
``path``                             ``%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%``      string
``protocol``                         ``%PROTOCOL%`` (``HTTP/1.1``, ``HTTP/2``)   string
``response_code``                    ``%RESPONSE_CODE%`` (0: none sent)          integer
``response_flags``                   ``%RESPONSE_FLAGS%`` (``-``: none)          string
``bytes_received``                   ``%BYTES_RECEIVED%`` (request body)         integer
``bytes_sent``                       ``%BYTES_SENT%`` (response body)            integer
``duration``                         ``%DURATION%`` (whole ms)                   integer
``x_forwarded_for``                  ``%REQ(X-FORWARDED-FOR)%``                  string/null
``user_agent``                       ``%REQ(USER-AGENT)%``                       string/null
``request_id``                       ``%REQ(X-REQUEST-ID)%``                     string/null
``authority``                        ``%REQ(:AUTHORITY)%``                       string
``upstream_host``                    ``%UPSTREAM_HOST%`` (``ip:port``)           string/null
``upstream_cluster``                 ``%UPSTREAM_CLUSTER%``                      string/null
``downstream_local_address``         ``%DOWNSTREAM_LOCAL_ADDRESS%``              string/null
``downstream_remote_address``        ``%DOWNSTREAM_REMOTE_ADDRESS%``             string
``requested_server_name``            ``%REQUESTED_SERVER_NAME%`` (SNI)           string/null
``upstream_request_attempt_count``   ``%UPSTREAM_REQUEST_ATTEMPT_COUNT%``        integer
``trace_id``                         ``%TRACE_ID%``                              string/null
``downstream_peer_principal``        ``%DOWNSTREAM_PEER_URI_SAN%`` (SPIFFE ID)   string/null
===================================  ==========================================  =========

The last three are not in Istio's default format; their keys are the operators' names in
lower case (the peer principal takes Istio's word for a SPIFFE ID). Istio calls the
``x-request-id`` value ``request_id``, so this record does too. A value that is absent is
``null``, as in Envoy's JSON format. Every key is always present.

Values must be ``str``/``int``/``None`` as typed: header values are bytes in the proxy and must
be decoded (latin-1) before they go in here, or msgspec would write them as base64.
"""

from __future__ import annotations

import time

import msgspec

from gateway.telemetry.access_flags import NO_FLAGS


class AccessLogEntry(msgspec.Struct, kw_only=True, gc=False):
    """What the access log says about one request. See the module docstring for the keys."""

    start_time: str
    route_name: str | None = None
    method: str
    path: str
    protocol: str
    response_code: int
    response_flags: str = NO_FLAGS
    bytes_received: int = 0
    bytes_sent: int = 0
    duration: int = 0
    x_forwarded_for: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    authority: str
    upstream_host: str | None = None
    upstream_cluster: str | None = None
    downstream_local_address: str | None = None
    downstream_remote_address: str = ""
    requested_server_name: str | None = None
    upstream_request_attempt_count: int = 0
    trace_id: str | None = None
    downstream_peer_principal: str | None = None


class _SecondCache:
    """The formatted date and time of the last whole second seen: requests that start in
    the same second (nearly all of them, under load) only format their milliseconds. One
    tuple, stored in one step, so that threads sharing it never pair a second with another
    second's text."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[int, str] = (-1, "")


_cache = _SecondCache()
# Index 1000 guards against a product that rounds up to a whole second.
_MILLIS: tuple[str, ...] = (*(f".{ms:03d}Z" for ms in range(1000)), ".999Z")


def format_start_time(epoch_s: float) -> str:
    """``epoch_s`` (``time.time()`` when the request started) as Envoy prints
    ``%START_TIME%``: RFC 3339, UTC, milliseconds, e.g. ``2024-05-01T12:34:56.789Z``."""
    second = int(epoch_s)
    cached, prefix = _cache.last
    if second != cached:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _cache.last = (second, prefix)
    return prefix + _MILLIS[int((epoch_s - second) * 1000)]
