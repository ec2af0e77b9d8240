"""The ``URLRewrite`` filter: rewrite the host and path before the request goes upstream.

Built by ``gateway.filters.chain`` from a ``URLRewriteFilter``; runs on the request path.
:func:`rewrite_path` is also what ``request_redirect`` uses to build a Location path.

``ReplacePrefixMatch`` follows the table in the Gateway API's ``HTTPPathModifier``: the
matched prefix (``RequestContext.matched_prefix``, set from the route match) is cut on a
path-element boundary and the replacement put in front of the rest, trailing ``/`` of both
ignored, an empty result being ``/``. So with prefix ``/foo``: ``/foo/bar`` → ``/xyz/bar``
(replacement ``/xyz`` or ``/xyz/``), ``/foo/`` → ``/xyz/``, ``/foo`` → ``/xyz``, and with
replacement ``/`` or ``""``: ``/foo/bar`` → ``/bar``, ``/foo`` → ``/``. The query string is
kept in every case.
"""

from __future__ import annotations

from gateway.codec.messages import ResponseHead
from gateway.config.snapshot import PathModifier, URLRewriteFilter
from gateway.filters.base import LocalReply, RequestContext
from gateway.filters.header_mutation import encode_value, replace_authority
from gateway.routing.match import normalize_prefix, prefix_matches


def rewrite_path(modifier: PathModifier, target: str, matched_prefix: str | None) -> str:
    """Apply ``modifier`` to a request target (path and query); the query is kept.

    ReplacePrefixMatch needs the PathPrefix that matched; without one (an Exact or
    RegularExpression match, which the config loader rejects) or when the path no longer
    starts with it, the path is left as it is.
    """
    q = target.find("?")
    path, query = (target, "") if q < 0 else (target[:q], target[q:])
    if modifier.type == "ReplaceFullPath":
        return (modifier.value or "/") + query
    if matched_prefix is None:
        return target
    prefix = normalize_prefix(matched_prefix)
    if not prefix_matches(prefix, path):
        return target
    new_path = normalize_prefix(modifier.value) + path[len(prefix) :]
    return (new_path or "/") + query


class URLRewrite:
    __slots__ = ("_hostname", "_path")

    def __init__(self, config: URLRewriteFilter) -> None:
        if config.hostname is not None:
            encode_value("urlRewrite.hostname", config.hostname)
        self._hostname = config.hostname or None
        if config.path is not None:
            encode_value("urlRewrite.path.value", config.path.value)
        self._path = config.path

    def on_request(self, ctx: RequestContext) -> LocalReply | None:
        request = ctx.request
        if self._hostname is not None:
            replace_authority(request, self._hostname)
        if self._path is not None:
            request.path = rewrite_path(self._path, request.path, ctx.matched_prefix)
        return None

    def on_response(self, ctx: RequestContext, response: ResponseHead) -> None:
        return None

    def __repr__(self) -> str:
        path = f"{self._path.type} {self._path.value!r}" if self._path is not None else "-"
        return f"<URLRewrite host={self._hostname or '-'} path={path}>"
