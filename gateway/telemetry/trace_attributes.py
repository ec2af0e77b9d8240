"""Span names and HTTP semantic-convention attributes, from request heads.

Pure functions used by ``gateway.telemetry.tracing``, only for sampled spans. The names are
the stable HTTP conventions (``http.request.method``, ``url.path``, ``server.address``, ...)
plus the proxy's own ``isthmus.*`` attributes.
"""

from __future__ import annotations

from opentelemetry.util.types import AttributeValue

from gateway.codec.messages import RequestHead

Attributes = dict[str, AttributeValue]

_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
# Query parameters whose values the conventions say to redact in url.full.
_SENSITIVE_QUERY = frozenset({"AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"})


def span_name(method: str) -> str:
    """The conventions' span name without a route: the method, ``HTTP`` when unknown."""
    return method if method in _KNOWN_METHODS else "HTTP"


def split_authority(authority: str) -> tuple[str, int | None]:
    """Host and port of a ``host[:port]`` or ``[v6]:port`` authority."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return authority, None
        host, rest = authority[1:end], authority[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, colon, port_text = authority.rpartition(":")
        if not colon:
            return authority, None
    if port_text.isdigit() and len(port_text) <= 5:
        return host, int(port_text)
    return host, None


def redact_query(target: str) -> str:
    """``target`` with the values of the conventions' sensitive query parameters redacted."""
    path, mark, query = target.partition("?")
    if not mark or not any(name in query for name in _SENSITIVE_QUERY):
        return target
    parts = []
    for part in query.split("&"):
        name, eq, _ = part.partition("=")
        parts.append(f"{name}=REDACTED" if eq and name in _SENSITIVE_QUERY else part)
    return f"{path}?{'&'.join(parts)}"


def _method_attributes(method: str, attrs: Attributes) -> None:
    if method in _KNOWN_METHODS:
        attrs["http.request.method"] = method
    else:
        attrs["http.request.method"] = "_OTHER"
        attrs["http.request.method_original"] = method


def error_type(response_flags: str) -> str:
    return response_flags if response_flags and response_flags != "-" else "_OTHER"


def server_attributes(
    request: RequestHead,
    peer_address: str | None,
    peer_port: int | None,
    peer_principal: str | None,
) -> Attributes:
    path = request.path
    query_at = path.find("?")
    scheme = request.scheme
    attrs: Attributes = {
        "url.path": path if query_at < 0 else path[:query_at],
        "url.scheme": scheme,
        "network.protocol.version": request.version,
    }
    _method_attributes(request.method, attrs)
    if request.authority:
        host, port = split_authority(request.authority)
        attrs["server.address"] = host
        attrs["server.port"] = port if port is not None else 443 if scheme == "https" else 80
    if peer_address:
        attrs["client.address"] = peer_address
        if peer_port is not None:
            attrs["client.port"] = peer_port
    user_agent = request.get(b"user-agent")
    if user_agent is not None:
        attrs["user_agent.original"] = user_agent.decode("latin-1")
    if peer_principal:
        attrs["isthmus.peer.principal"] = peer_principal
    return attrs


def client_attributes(
    request: RequestHead, cluster: str, address: str | None, port: int | None, attempt: int
) -> Attributes:
    attrs: Attributes = {
        "isthmus.upstream.cluster": cluster,
        "url.full": f"{request.scheme}://{request.authority}{redact_query(request.path)}",
    }
    _method_attributes(request.method, attrs)
    if address:
        attrs["server.address"] = address
    if port is not None:
        attrs["server.port"] = port
    if attempt > 0:
        attrs["http.request.resend_count"] = attempt
    return attrs
