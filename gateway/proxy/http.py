"""The HTTP request handler: route, run the request filters, start the exchange.

:class:`HttpProxy` is the :class:`~gateway.transport.streams.RequestHandlerFactory` the
listeners hand every request to. It works on the route tables of the snapshot that was
active when the request arrived; a later snapshot does not affect it.

Called by the transports, per request.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from gateway.codec.messages import RequestHead, ResponseHead
from gateway.filters.base import HttpFilter, LocalReply, RequestContext
from gateway.filters.chain import run_request
from gateway.filters.listener_security import ListenerSecurity
from gateway.proxy.context import EngineContext
from gateway.proxy.exchange import Exchange, copy_request
from gateway.proxy.local import DelayedReplyHandler, LocalReplyHandler
from gateway.proxy.mirror import NullStream
from gateway.routing.table import RouteTable
from gateway.transport.streams import ServerStream, StreamHandler

_CONTINUE = b"100-continue"


def inspect(request: RequestHead) -> tuple[str, bytes | None, bytes | None]:
    """One pass over the headers: the protocol label (``grpc`` or ``http``), the
    ``x-forwarded-for`` value and the ``expect`` value."""
    protocol = "http"
    xff = expect = None
    for k, v in request.headers:
        if k == b"content-type":
            if v.startswith(b"application/grpc"):
                protocol = "grpc"
        elif k == b"x-forwarded-for":
            xff = v
        elif k == b"expect":
            expect = v
    return protocol, xff, expect


def add_forwarded(request: RequestHead, client: str, xff: bytes | None) -> None:
    """Append the client to ``x-forwarded-for`` and set ``x-forwarded-proto``, as Envoy
    and nginx do at the edge."""
    addr = client.encode("latin-1")
    headers = request.headers
    if xff is None:
        headers.append((b"x-forwarded-for", addr))
    else:
        for i, (k, v) in enumerate(headers):
            if k == b"x-forwarded-for":
                headers[i] = (k, v + b", " + addr)
                break
    proto = b"https" if request.scheme == "https" else b"http"
    for i, (k, _v) in enumerate(headers):
        if k == b"x-forwarded-proto":
            headers[i] = (k, proto)
            return
    headers.append((b"x-forwarded-proto", proto))


class HttpProxy:
    """One per listening port and snapshot."""

    __slots__ = ("engine", "security", "table")

    def __init__(
        self,
        engine: EngineContext,
        table: RouteTable[HttpFilter],
        security: ListenerSecurity | None = None,
    ) -> None:
        self.engine = engine
        self.table = table
        # Listener-level authn/authz (RequestAuthentication, AuthorizationPolicy): as in
        # Envoy, these filters run before the router, so before route matching.
        self.security = security

    def on_request(self, stream: ServerStream) -> StreamHandler:
        started = time.monotonic()
        request = stream.request
        protocol, xff, expect = inspect(request)
        ctx = RequestContext(
            request=request,
            downstream_address=stream.info.remote_address,
            downstream_tls=stream.info.tls,
            peer_principal=stream.info.peer_principal,
        )
        security = self.security
        if security is not None:
            denied = security.on_request(ctx)
            if denied is not None:
                return self._reply(stream, denied, started, protocol)
        result = self.table.match(request.authority, request.path, request.method, request.headers)
        if result is None:
            return self._reply(stream, LocalReply(404, body=b"no route\n", flag="NR"), started,
                               protocol)  # fmt: skip
        rule = result.rule
        ctx.matched_prefix = result.matched_prefix
        chain = rule.filters
        if chain:
            reply = run_request(chain, ctx)
            if reply is not None:
                if ctx.delay_s > 0:  # a Fault that delays, then aborts
                    return DelayedReplyHandler(
                        stream, reply, self._recorder(protocol), started, ctx.delay_s
                    )
                return self._reply(stream, reply, started, protocol)
        cluster = rule.pick_backend(random.random())
        if not cluster:
            # Every weight zero, or a backendRef that did not resolve: the spec says 500.
            return self._reply(stream, LocalReply(500, body=b"no backend\n", flag="NC"),
                               started, protocol)  # fmt: skip
        if expect is not None:
            self._continue(stream, request, expect)
        add_forwarded(request, stream.info.remote_address, xff)
        span = None
        observer = self.engine.observer
        if observer is not None:
            span = observer.request_started(stream, ctx.peer_principal)
        exchange = Exchange(
            self.engine,
            stream,
            ctx,
            chain,
            cluster,
            started=started,
            protocol=protocol,
            request_timeout_s=rule.request_timeout_s,
            backend_timeout_s=rule.backend_request_timeout_s,
            retry=rule.retry,
        )
        exchange.span = span
        if ctx.mirrors:
            exchange.mirrors = self._mirrors(stream, ctx, started, protocol)
        delay = ctx.delay_s
        if delay > 0:
            # A Fault delay: the request waits before it goes upstream (flag DI).
            self.engine.loop.call_later(delay, exchange.start_delayed)
        else:
            exchange.start()
        return exchange

    def _continue(self, stream: ServerStream, request: RequestHead, value: bytes) -> None:
        """Answer ``Expect: 100-continue`` here, as Envoy does, and not forward it."""
        request.headers = [(k, v) for k, v in request.headers if k != b"expect"]
        if value.lower() == _CONTINUE and not request.end_stream:
            stream.send_interim(ResponseHead(100, []))

    def _mirrors(
        self, stream: ServerStream, ctx: RequestContext, started: float, protocol: str
    ) -> list[Exchange]:
        out = []
        for cluster in ctx.mirrors:
            null = NullStream(copy_request(stream.request), stream.info)
            m = Exchange(self.engine, null, ctx, (), cluster, started=started,
                         protocol=protocol, record=False)  # fmt: skip
            m.start()
            out.append(m)
        return out

    def _reply(
        self, stream: ServerStream, reply: LocalReply, started: float, protocol: str
    ) -> StreamHandler:
        return LocalReplyHandler(stream, reply, self._recorder(protocol), started)

    def _recorder(self, protocol: str) -> Callable[[ServerStream, LocalReply, float], None]:
        def record(s: ServerStream, r: LocalReply, ms: float) -> None:
            key = ("", protocol, r.status, "", r.flag, "")
            engine = self.engine
            engine.stats.record_request(key, ms, 0, len(r.body))
            observer = engine.observer
            if observer is not None:
                observer.local_done(s, r, ms)

        return record
