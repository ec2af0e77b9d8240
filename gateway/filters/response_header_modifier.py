"""The ``ResponseHeaderModifier`` filter: set, add and remove response headers.

Built by ``gateway.filters.chain`` from a ``ResponseHeaderModifierFilter``; runs on the
response path, on the upstream's response head before it goes downstream.
"""

from __future__ import annotations

from gateway.codec.messages import ResponseHead
from gateway.config.snapshot import ResponseHeaderModifierFilter
from gateway.filters.base import LocalReply, RequestContext
from gateway.filters.header_mutation import HeaderMutation


class ResponseHeaderModifier:
    __slots__ = ("_mutation",)

    def __init__(self, config: ResponseHeaderModifierFilter) -> None:
        self._mutation = HeaderMutation(config.modifier, field="responseHeaderModifier")

    def on_request(self, ctx: RequestContext) -> LocalReply | None:
        return None

    def on_response(self, ctx: RequestContext, response: ResponseHead) -> None:
        self._mutation.apply(response.headers)

    def __repr__(self) -> str:
        return f"<ResponseHeaderModifier {self._mutation!r}>"
