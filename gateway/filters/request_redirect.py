"""The ``RequestRedirect`` filter: answer with a redirect instead of forwarding.

Built by ``gateway.filters.chain`` from a ``RequestRedirectFilter``; runs on the request path
and stops the chain with a :class:`LocalReply` carrying ``Location``.

The Location is built per the Gateway API ``HTTPRequestRedirectFilter``:

* scheme: the configured one, else the request's;
* host: the configured hostname, else the request's Host without its port;
* port: the configured one; else, when a scheme is configured, that scheme's well-known port
  (80, 443); else the port the client addressed (the Host's port, which is the listener's
  port as the client sees it; the scheme's default when the Host has none). A port that is
  the default of the Location's scheme is left out;
* path: rewritten by ``ReplaceFullPath`` / ``ReplacePrefixMatch`` as in ``url_rewrite``, else
  kept; the query string is always kept.
"""

from __future__ import annotations

from gateway.codec.messages import ResponseHead
from gateway.config.snapshot import RequestRedirectFilter
from gateway.filters.base import LocalReply, RequestContext
from gateway.filters.header_mutation import encode_value
from gateway.filters.url_rewrite import rewrite_path
from gateway.routing.hostnames import split_authority

REDIRECT_STATUS_CODES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}


class RequestRedirect:
    __slots__ = ("_hostname", "_path", "_port", "_scheme", "_status")

    def __init__(self, config: RequestRedirectFilter) -> None:
        if config.status_code not in REDIRECT_STATUS_CODES:
            raise ValueError(
                f"requestRedirect.statusCode: {config.status_code} is not one of "
                f"{sorted(REDIRECT_STATUS_CODES)}"
            )
        scheme = config.scheme.lower() if config.scheme else None
        if scheme is not None and scheme not in DEFAULT_PORTS:
            raise ValueError(f"requestRedirect.scheme: {config.scheme!r} is not http or https")
        if config.port is not None and not 0 < config.port < 65536:
            raise ValueError(f"requestRedirect.port: {config.port} is out of range")
        if config.hostname:
            encode_value("requestRedirect.hostname", config.hostname)
        if config.path is not None:
            encode_value("requestRedirect.path.value", config.path.value)
        self._status = config.status_code
        self._scheme = scheme
        self._hostname = config.hostname.lower() if config.hostname else None
        self._port = config.port
        self._path = config.path

    def location(self, ctx: RequestContext) -> str:
        """The Location for this request."""
        request = ctx.request
        scheme = self._scheme or request.scheme.lower() or "http"
        host, addressed_port = split_authority(request.authority)
        if self._hostname is not None:
            host = self._hostname
        port: int | None
        if self._port is not None:
            port = self._port
        elif self._scheme is not None:
            port = DEFAULT_PORTS[self._scheme]
        else:
            port = addressed_port
        target = request.path
        if self._path is not None:
            target = rewrite_path(self._path, target, ctx.matched_prefix)
        if not host:  # HTTP/1.0 without Host: a relative reference is all we can give
            return target
        if port is None or port == DEFAULT_PORTS.get(scheme):
            return f"{scheme}://{host}{target}"
        return f"{scheme}://{host}:{port}{target}"

    def on_request(self, ctx: RequestContext) -> LocalReply | None:
        location = self.location(ctx)
        try:
            value = location.encode("latin-1")
        except UnicodeEncodeError:
            value = location.encode("utf-8")
        return LocalReply(self._status, [(b"location", value)])

    def on_response(self, ctx: RequestContext, response: ResponseHead) -> None:
        return None

    def __repr__(self) -> str:
        return (
            f"<RequestRedirect {self._status} scheme={self._scheme or '-'} "
            f"host={self._hostname or '-'} port={self._port or '-'}>"
        )
