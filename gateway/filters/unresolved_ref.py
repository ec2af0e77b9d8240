"""The stand-in for an ExtensionRef filter whose object is missing.

Built by ``gateway.filters.chain`` from an ``UnresolvedFilter``. The Gateway API says a filter
that cannot be resolved is not skipped: the requests it would have processed get an HTTP
error. This one answers every request with 500; the unresolved reference is listed in the
snapshot (``/config``) for the operator.
"""

from __future__ import annotations

from gateway.codec.messages import ResponseHead
from gateway.config.snapshot import UnresolvedFilter
from gateway.filters.base import LocalReply, RequestContext


class UnresolvedRef:
    __slots__ = ("_target",)

    def __init__(self, config: UnresolvedFilter) -> None:
        self._target = config.target

    def on_request(self, ctx: RequestContext) -> LocalReply | None:
        return LocalReply(500, body=b"route filter not resolved\n")

    def on_response(self, ctx: RequestContext, response: ResponseHead) -> None:
        return None

    def __repr__(self) -> str:
        return f"<UnresolvedRef {self._target}>"
