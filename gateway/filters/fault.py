"""The ``Fault`` filter: Istio-style fault injection, a fixed delay and/or an abort.

Built by ``gateway.filters.chain`` from a ``FaultFilter`` (an ``isthmus.dev`` Fault referenced
by a route rule's ExtensionRef). On the request path, with one independent draw each:

* delay (``delay_percent`` of requests): adds ``delay_s`` to ``RequestContext.delay_s``; the
  request handler waits that long before it sends the request upstream (response flag
  ``DI``);
* abort (``abort_percent`` of requests): answers instead of forwarding, flag ``FI`` (``DI,FI``
  when the request was also delayed, as Envoy prints it). A plain HTTP request gets
  ``abort_http_status``, or the HTTP status of ``abort_grpc_status``; a gRPC request gets 200
  with ``grpc-status`` (``abort_grpc_status``, or the gRPC code of the HTTP status) in a
  trailers-only response.

``rand`` is the random source, a uniform draw in [0, 1); tests pass their own.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from gateway.codec.messages import ResponseHead
from gateway.config.snapshot import FaultFilter
from gateway.filters.base import LocalReply, RequestContext
from gateway.filters.grpc_status import grpc_code_for, grpc_reply, http_status_for, is_grpc

ABORT_FLAG = "FI"
DELAY_FLAG = "DI"
_MESSAGE = "fault filter abort"


class Fault:
    __slots__ = ("_abort", "_delay", "_delay_s", "_grpc", "_http", "_name", "_random")

    def __init__(self, config: FaultFilter, *, rand: Callable[[], float] = random.random) -> None:
        for field, percent in (("delay", config.delay_percent), ("abort", config.abort_percent)):
            if not 0.0 <= percent <= 100.0:
                raise ValueError(f"fault.{field}.percentage: {percent} is not within 0..100")
        if config.delay_s < 0:
            raise ValueError(f"fault.delay.fixedDelay: {config.delay_s}s is negative")
        http, grpc = config.abort_http_status, config.abort_grpc_status
        if http is not None and not 200 <= http <= 599:
            raise ValueError(f"fault.abort.httpStatus: {http} is not within 200..599")
        if grpc is not None and not 0 < grpc <= 16:
            raise ValueError(f"fault.abort.grpcStatus: {grpc} is not a gRPC error code")
        self._name = config.name
        self._delay_s = config.delay_s
        self._delay = config.delay_percent / 100.0 if config.delay_s > 0 else 0.0
        self._abort = config.abort_percent / 100.0 if (http or grpc) else 0.0
        self._http = http if http is not None else http_status_for(grpc or 0)
        self._grpc = grpc if grpc is not None else grpc_code_for(self._http)
        self._random = rand

    def _hit(self, fraction: float) -> bool:
        return fraction >= 1.0 or (fraction > 0.0 and self._random() < fraction)

    def on_request(self, ctx: RequestContext) -> LocalReply | None:
        delayed = self._hit(self._delay)
        if delayed:
            ctx.delay_s += self._delay_s
        if not self._hit(self._abort):
            return None
        flag = f"{DELAY_FLAG},{ABORT_FLAG}" if delayed else ABORT_FLAG
        if is_grpc(ctx.request):
            return grpc_reply(self._grpc, _MESSAGE, flag)
        return LocalReply(self._http, body=_MESSAGE.encode() + b"\n", flag=flag)

    def on_response(self, ctx: RequestContext, response: ResponseHead) -> None:
        return None

    def __repr__(self) -> str:
        return (
            f"<Fault {self._name} delay {self._delay_s:g}s@{self._delay * 100:g}% "
            f"abort {self._http}/grpc {self._grpc}@{self._abort * 100:g}%>"
        )
