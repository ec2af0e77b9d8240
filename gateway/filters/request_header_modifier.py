"""The ``RequestHeaderModifier`` filter: set, add and remove request headers.

Built by ``gateway.filters.chain`` from a ``RequestHeaderModifierFilter``; runs on the request
path. ``host`` is special: it is the request's authority, so ``set`` or ``add`` of ``host``
rewrites ``RequestHead.authority`` (and an HTTP/1.1 ``host`` field line, if the codec kept
one) instead of adding a second Host; ``remove`` of ``host`` is ignored because a request
cannot go upstream without one.
"""

from __future__ import annotations

from gateway.codec.messages import ResponseHead
from gateway.config.snapshot import RequestHeaderModifierFilter
from gateway.filters.base import LocalReply, RequestContext
from gateway.filters.header_mutation import HeaderMutation, encode_value, replace_authority


class RequestHeaderModifier:
    __slots__ = ("_authority", "_mutation")

    def __init__(self, config: RequestHeaderModifierFilter) -> None:
        modifier = config.modifier
        self._mutation = HeaderMutation(modifier, field="requestHeaderModifier", skip=(b"host",))
        authority: str | None = None
        for name, value in (*modifier.add, *modifier.set):  # set wins
            if name.lower() == "host":
                encode_value("requestHeaderModifier.host", value)
                authority = value
        self._authority = authority

    def on_request(self, ctx: RequestContext) -> LocalReply | None:
        request = ctx.request
        self._mutation.apply(request.headers)
        if self._authority is not None:
            replace_authority(request, self._authority)
        return None

    def on_response(self, ctx: RequestContext, response: ResponseHead) -> None:
        return None

    def __repr__(self) -> str:
        return f"<RequestHeaderModifier {self._mutation!r}>"
