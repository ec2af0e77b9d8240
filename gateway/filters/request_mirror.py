"""The ``RequestMirror`` filter: send a copy of the request to another cluster.

Built by ``gateway.filters.chain`` from a ``RequestMirrorFilter``; runs on the request path and
only records the cluster in ``RequestContext.mirrors``. The router sends the copies and
ignores their answers. ``percent`` (0 to 100) is honoured with one random draw per request.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from gateway.codec.messages import ResponseHead
from gateway.config.snapshot import RequestMirrorFilter
from gateway.filters.base import LocalReply, RequestContext


class RequestMirror:
    __slots__ = ("_cluster", "_fraction", "_random")

    def __init__(
        self, config: RequestMirrorFilter, *, rand: Callable[[], float] = random.random
    ) -> None:
        """``rand`` returns a uniform draw in [0, 1); tests pass a fixed one."""
        if not 0.0 <= config.percent <= 100.0:
            raise ValueError(f"requestMirror.percent: {config.percent} is not within 0..100")
        self._cluster = config.cluster
        self._fraction = config.percent / 100.0
        self._random = rand

    def on_request(self, ctx: RequestContext) -> LocalReply | None:
        fraction = self._fraction
        if fraction >= 1.0 or (fraction > 0.0 and self._random() < fraction):
            ctx.mirrors.append(self._cluster)
        return None

    def on_response(self, ctx: RequestContext, response: ResponseHead) -> None:
        return None

    def __repr__(self) -> str:
        return f"<RequestMirror {self._cluster} {self._fraction * 100:g}%>"
