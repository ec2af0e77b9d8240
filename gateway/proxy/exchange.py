"""The router, the terminal filter: one :class:`Exchange` pipes one request to an upstream.

An exchange is both the downstream stream's handler and the upstream stream's handler, so
bytes cross it by direct calls: request body to upstream, response to downstream, with each
side's flow control pausing the other. A task is used only to open a new upstream
connection. Failures before the response starts become local replies with the matching
status and Envoy response flag; after it starts, the downstream stream is reset.

A request that fails on a reused (pooled) connection before anything of the response came
back, and before any of its body was sent, is tried once more on a new connection: the
server closed an idle connection as we picked it, which is not the request's fault.

Called by ``gateway.proxy.http``.
"""

from __future__ import annotations

import asyncio
import time

from gateway.codec.messages import Headers, RequestHead, ResponseHead
from gateway.filters.base import HttpFilter, LocalReply, RequestContext
from gateway.filters.chain import run_response
from gateway.proxy.context import EngineContext
from gateway.proxy.local import send_reply
from gateway.proxy.tunnel import TunnelPipe
from gateway.transport.streams import ServerStream
from gateway.upstream.errors import NoHealthyUpstream, UpstreamError, UpstreamTimeout
from gateway.upstream.http1 import H1UpstreamConnection
from gateway.upstream.pool import EndpointPool
from gateway.upstream.stream import UpstreamStream


class Exchange:
    __slots__ = (
        "_backend_timer",
        "_body",
        "_body_ended",
        "_body_forwarded",
        "_body_size",
        "_connecting",
        "_done",
        "_grpc_status",
        "_req_bytes",
        "_resp_bytes",
        "_response_started",
        "_retried",
        "_reused",
        "_status",
        "_timer",
        "_trailers",
        "backend_timeout_s",
        "chain",
        "cluster_name",
        "ctx",
        "engine",
        "mirrors",
        "pool",
        "protocol",
        "record",
        "request_timeout_s",
        "started",
        "stream",
        "upstream",
    )

    def __init__(
        self,
        engine: EngineContext,
        stream: ServerStream,
        ctx: RequestContext,
        chain: tuple[HttpFilter, ...],
        cluster_name: str,
        *,
        started: float,
        protocol: str,
        request_timeout_s: float | None = None,
        backend_timeout_s: float | None = None,
        record: bool = True,
    ) -> None:
        self.engine = engine
        self.stream = stream
        self.ctx = ctx
        self.chain = chain
        self.cluster_name = cluster_name
        self.started = started
        self.protocol = protocol
        self.request_timeout_s = request_timeout_s
        self.backend_timeout_s = backend_timeout_s
        self.record = record
        self.pool: EndpointPool | None = None
        self.upstream: UpstreamStream | None = None
        self.mirrors: list[Exchange] | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._backend_timer: asyncio.TimerHandle | None = None
        self._body: list[bytes] | None = None
        self._body_size = 0
        self._body_ended = stream.request.end_stream
        self._trailers: Headers | None = None
        self._body_forwarded = False
        self._response_started = False
        self._done = False
        self._reused = False
        self._retried = False
        self._status = 0
        self._grpc_status = ""
        self._req_bytes = 0
        self._resp_bytes = 0

    # -- start -------------------------------------------------------------------------------

    def start(self) -> None:
        engine = self.engine
        cluster = engine.clusters.get(self.cluster_name)
        if cluster is None:
            self._local(LocalReply(500, body=b"no such backend\n", flag="NC"))
            return
        pool = cluster.pick()
        if pool is None:
            self._fail(NoHealthyUpstream("no healthy upstream"))
            return
        self.pool = pool
        pool.active_requests += 1
        if self.request_timeout_s:
            self._timer = engine.loop.call_later(self.request_timeout_s, self._on_timeout)
        got = pool.try_stream(self)
        if got is not None:
            self._attach(got[0], got[1])
        else:
            self._connecting = engine.supervisor.spawn(self._connect(pool))

    async def _connect(self, pool: EndpointPool) -> None:
        try:
            up = await pool.connect_stream(self)
        except UpstreamError as err:
            self._connecting = None
            if not self._done:
                self._fail(err)
            return
        self._connecting = None
        if self._done:
            up.abort()
            return
        self._attach(up, False)

    def _attach(self, up: UpstreamStream, reused: bool) -> None:
        self.upstream = up
        self._reused = reused
        request = self.stream.request
        body = self._body
        self._body = None
        try:
            up.send_request(request, request.end_stream)
        except Exception as exc:  # a codec refusing the request must not strand the client
            self.upstream = None
            up.abort()
            self._fail(UpstreamError(f"upstream refused the request: {exc}"))
            return
        if self.backend_timeout_s:
            if self._backend_timer is not None:
                self._backend_timer.cancel()  # a retried attempt gets its own deadline
            self._backend_timer = self.engine.loop.call_later(
                self.backend_timeout_s, self._on_timeout
            )
        if request.end_stream:
            return
        if body:
            self._body_forwarded = True
            for chunk in body:
                up.send_data(chunk)
            self._body_size = 0
            self.stream.resume_body()
        if self._body_ended:
            up.send_end(self._trailers)

    # -- downstream events (StreamHandler) -------------------------------------------------------

    def on_body(self, data: bytes) -> None:
        if self._done:
            return
        self._req_bytes += len(data)
        mirrors = self.mirrors
        if mirrors:
            self._tee(data)
        up = self.upstream
        if up is not None:
            self._body_forwarded = True
            up.send_data(data)
            if up.write_paused:
                self.stream.pause_body()
            return
        if self._body is None:
            self._body = []
        self._body.append(data)
        self._body_size += len(data)
        if self._body_size > self.engine.limits.stream_buffer_bytes:
            self.stream.pause_body()

    def on_body_end(self, trailers: Headers | None) -> None:
        if self._done:
            return
        if self.mirrors:
            for m in self.mirrors:
                m.on_body_end(trailers)
        self._body_ended = True
        self._trailers = trailers
        up = self.upstream
        if up is not None:
            up.send_end(trailers)

    def on_abort(self) -> None:
        if self._done:
            return
        up = self.upstream
        self.upstream = None
        if up is not None:
            up.abort()
        self._finish(self._status, "DC")

    def on_writable(self) -> None:
        up = self.upstream
        if up is not None:
            up.resume_response()

    # -- upstream events (UpstreamHandler) ---------------------------------------------------

    def on_response(self, head: ResponseHead) -> None:
        if self._done:
            return
        status = head.status
        if status < 200:
            if status == 101:
                self._upgrade(head)
            else:
                self.stream.send_interim(head)
            return
        self._response_started = True
        self._status = status
        if self.chain:
            run_response(self.chain, self.ctx, head)
        if head.end_stream:
            grpc = head.get(b"grpc-status")
            if grpc is not None:
                self._grpc_status = grpc.decode("latin-1")
        self.stream.send_head(head)

    def on_response_data(self, data: bytes) -> None:
        if self._done:
            return
        self._resp_bytes += len(data)
        stream = self.stream
        stream.send_data(data)
        if stream.write_paused:
            up = self.upstream
            if up is not None:
                up.pause_response()

    def on_response_end(self, trailers: Headers | None) -> None:
        if self._done:
            return
        if trailers:
            for k, v in trailers:
                if k == b"grpc-status":
                    self._grpc_status = v.decode("latin-1")
        self.upstream = None
        self.stream.send_end(trailers)
        self._finish(self._status, "")

    def on_upstream_error(self, error: UpstreamError) -> None:
        if self._done:
            return
        self.upstream = None
        if (
            self._reused
            and not self._retried
            and not self._response_started
            and not self._body_forwarded
            and self.pool is not None
        ):
            self._retried = True
            self._reused = False
            self._connecting = self.engine.supervisor.spawn(self._connect(self.pool))
            return
        self._fail(error)

    def on_upstream_writable(self) -> None:
        self.stream.resume_body()

    def on_upstream_read_done(self) -> None:
        if not self._done:
            self.stream.flush()

    # -- endings -------------------------------------------------------------------------------

    def _on_timeout(self) -> None:
        if self._done:
            return
        up = self.upstream
        self.upstream = None
        if up is not None:
            up.abort()
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        self._fail(UpstreamTimeout("upstream request timeout"))

    def _fail(self, error: UpstreamError) -> None:
        if self._response_started:
            self.stream.abort()
            self._finish(self._status, error.flag)
            return
        body = (error.reason + "\n").encode("latin-1", "replace")
        self._local(LocalReply(error.status, body=body, flag=error.flag))

    def _local(self, reply: LocalReply) -> None:
        self._response_started = True
        send_reply(self.stream, reply)
        self._finish(reply.status, reply.flag)

    def _finish(self, status: int, flag: str) -> None:
        if self._done:
            return
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
        if self._backend_timer is not None:
            self._backend_timer.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        pool = self.pool
        if pool is not None:
            pool.active_requests -= 1
        if self.mirrors and flag == "DC":
            for m in self.mirrors:
                m.on_abort()
        if self.record:
            duration_ms = (time.monotonic() - self.started) * 1000.0
            key = (self.cluster_name, self.protocol, status, self._grpc_status, flag)
            self.engine.stats.record_request(key, duration_ms, self._req_bytes, self._resp_bytes)
            cb = self.engine.on_complete
            if cb is not None:
                cb(key, duration_ms, self._req_bytes, self._resp_bytes)

    # -- mirrors -------------------------------------------------------------------------------

    def _tee(self, data: bytes) -> None:
        assert self.mirrors is not None
        keep = []
        for m in self.mirrors:
            if getattr(m.stream, "lagging", False):
                m.on_abort()  # a slow mirror is dropped rather than slowing the request
            else:
                m.on_body(data)
                keep.append(m)
        self.mirrors = keep

    # -- upgrade -------------------------------------------------------------------------------

    def _upgrade(self, head: ResponseHead) -> None:
        up = self.upstream
        stream = self.stream
        if not isinstance(up, H1UpstreamConnection) or stream.request.upgrade is None:
            self._fail(UpstreamError("unexpected 101 response"))
            return
        self._response_started = True
        self._status = 101
        stream.send_head(head)
        pipe = TunnelPipe()
        down = stream.start_tunnel(pipe.downstream_sink)
        if down is None:
            up.abort()
            self.upstream = None
            self._finish(101, "UC")
            return
        upstream_src = up.start_tunnel(pipe.upstream_sink)
        pipe.connect(down, upstream_src)
        self.upstream = None
        self._finish(101, "")


def copy_request(head: RequestHead) -> RequestHead:
    """An independent copy of a request head, for a mirror."""
    return RequestHead(
        head.method,
        head.path,
        head.authority,
        list(head.headers),
        scheme=head.scheme,
        version=head.version,
        content_length=head.content_length,
        end_stream=head.end_stream,
    )
