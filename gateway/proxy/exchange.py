"""The router, the terminal filter: one :class:`Exchange` pipes one request to an upstream.

An exchange is both the downstream stream's handler and the upstream stream's handler, so
bytes cross it by direct calls: request body to upstream, response to downstream, with each
side's flow control pausing the other. A task is used only to open a new upstream
connection. Failures before the response starts become local replies with the matching
status and Envoy response flag; after it starts, the downstream stream is reset.

Tries. A request may take several tries (HTTPRoute ``retry``): after a connect failure, a
reset, a per-try timeout (``timeouts.backendRequest``) or a response whose status is in the
retry ``codes``. Each retry waits an exponential backoff with full jitter, goes to another
endpoint when there is one (Istio's ``previous_hosts`` predicate), and must be admitted by
the cluster's circuit breaker: ``maxRetries`` and the retry budget. A try can be replayed only
while the request body sent so far is kept, up to ``retryBufferBytes``; past that the
request is no longer retried. When the retries run out on a retryable status, that
response goes to the client with the flag ``URX``.

A request that fails on a reused (pooled) connection before anything of the response came
back is tried once more on a new connection, outside the retry policy: the server closed an
idle connection as we picked it, which is not the request's fault.

Every try's outcome goes to the cluster's outlier detection. Called by
``gateway.proxy.http``.
"""

from __future__ import annotations

import asyncio
import random
import time

from gateway.codec.messages import Headers, RequestHead, ResponseHead
from gateway.config.snapshot import RetryPolicy
from gateway.filters.base import HttpFilter, LocalReply, RequestContext
from gateway.filters.chain import run_response
from gateway.proxy.context import ClientSpanLike, EngineContext, ServerSpanLike
from gateway.proxy.hashing import request_hash
from gateway.proxy.local import send_reply
from gateway.proxy.tunnel import TunnelPipe
from gateway.transport.streams import ServerStream
from gateway.upstream.cluster import UpstreamCluster
from gateway.upstream.errors import NoHealthyUpstream, UpstreamError, UpstreamTimeout
from gateway.upstream.http1 import H1UpstreamConnection
from gateway.upstream.pool import EndpointPool
from gateway.upstream.stream import UpstreamStream

# How many times a retry looks for an endpoint it has not tried yet (Istio's default).
_HOST_SELECTION_ATTEMPTS = 5
_UO = LocalReply(503, body=b"upstream connect error: overflow\n", flag="UO")


class Exchange:
    __slots__ = (
        "_admitted",
        "_backend_timer",
        "_body",
        "_body_ended",
        "_body_forwarded",
        "_body_size",
        "_client_span",
        "_connecting",
        "_delayed",
        "_done",
        "_grpc_status",
        "_in_retry",
        "_pending",
        "_replay",
        "_replay_size",
        "_req_bytes",
        "_resp_bytes",
        "_response_started",
        "_retry_timer",
        "_reused",
        "_stale_retried",
        "_status",
        "_timer",
        "_trailers",
        "_tried",
        "attempt",
        "backend_timeout_s",
        "chain",
        "cluster",
        "cluster_name",
        "ctx",
        "engine",
        "flags",
        "hash_key",
        "mirrors",
        "pool",
        "protocol",
        "record",
        "request_timeout_s",
        "retry",
        "set_cookie",
        "span",
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
        retry: RetryPolicy | None = None,
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
        self.retry = retry
        self.record = record
        self.cluster: UpstreamCluster | None = None
        self.pool: EndpointPool | None = None
        self.upstream: UpstreamStream | None = None
        self.mirrors: list[Exchange] | None = None
        self.attempt = 0
        self.flags = ""
        self.hash_key = 0
        self.set_cookie: bytes | None = None
        self.span: ServerSpanLike | None = None
        self._client_span: ClientSpanLike | None = None
        self._delayed = False
        self._connecting: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._backend_timer: asyncio.TimerHandle | None = None
        self._retry_timer: asyncio.TimerHandle | None = None
        # Request body received but not yet sent to the current try.
        self._body: list[bytes] | None = None
        self._body_size = 0
        # Request body sent so far, kept for a retry; None once it outgrew the limit.
        self._replay: list[bytes] | None = [] if retry is not None else None
        self._replay_size = 0
        self._body_ended = stream.request.end_stream
        self._body_forwarded = False
        self._trailers: Headers | None = None
        self._response_started = False
        self._done = False
        self._reused = False
        self._stale_retried = False
        self._admitted = False
        self._pending = False
        self._in_retry = False
        self._tried: list[EndpointPool] | None = None
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
        self.cluster = cluster
        consistent_hash = cluster.config.consistent_hash
        if consistent_hash is not None:
            self.hash_key, self.set_cookie = request_hash(consistent_hash, self.ctx)
        if not cluster.breaker.admit_request():
            self._local(_UO)
            return
        self._admitted = True
        if self.request_timeout_s:
            self._timer = engine.loop.call_later(self.request_timeout_s, self._on_timeout)
        self._try()

    def start_delayed(self) -> None:
        """``start`` after a Fault delay, unless the client left meanwhile."""
        self._delayed = True
        if not self._done:
            self.start()

    def _try(self) -> None:
        """Start one try: pick an endpoint and get a stream on it."""
        cluster = self.cluster
        assert cluster is not None
        self.attempt += 1
        pool = self._pick(cluster)
        if pool is None:
            self._fail(NoHealthyUpstream("no healthy upstream"))
            return
        self._use(pool)
        got = pool.try_stream(self)
        if got is not None:
            self._attach(got[0], got[1])
            return
        if not cluster.breaker.admit_pending():
            self._release_pool()
            self._local(_UO)
            return
        self._pending = True
        self._connecting = self.engine.supervisor.spawn(self._connect(pool))

    def _pick(self, cluster: UpstreamCluster) -> EndpointPool | None:
        pool = cluster.pick(self.hash_key)
        tried = self._tried
        if tried and pool is not None and pool in tried:
            for _ in range(_HOST_SELECTION_ATTEMPTS):
                other = cluster.pick(self.hash_key)
                if other is not None and other not in tried:
                    return other
        return pool

    def _use(self, pool: EndpointPool) -> None:
        self.pool = pool
        pool.active_requests += 1
        if self.retry is not None:
            if self._tried is None:
                self._tried = [pool]
            else:
                self._tried.append(pool)

    def _release_pool(self) -> None:
        pool = self.pool
        if pool is not None:
            pool.active_requests -= 1
            self.pool = None

    def _unpend(self) -> None:
        if self._pending:
            self._pending = False
            cluster = self.cluster
            if cluster is not None:
                cluster.breaker.pending -= 1

    async def _connect(self, pool: EndpointPool) -> None:
        try:
            up = await pool.connect_stream(self)
        except UpstreamError as err:
            self._connecting = None
            self._unpend()
            if not self._done:
                self._try_failed(err, local=True)
            return
        self._connecting = None
        self._unpend()
        if self._done:
            up.abort()
            return
        self._attach(up, False)

    def _attach(self, up: UpstreamStream, reused: bool) -> None:
        self.upstream = up
        self._reused = reused
        request = self.stream.request
        span = self.span
        if span is not None:
            pool = self.pool
            client = span.start_client(
                request,
                self.cluster_name,
                pool.address if pool is not None else None,
                pool.port if pool is not None else None,
                self.attempt - 1,
            )
            client.inject(request.headers)
            self._end_try(None, "")
            self._client_span = client
        try:
            up.send_request(request, request.end_stream)
        except Exception as exc:  # a codec refusing the request must not strand the client
            self.upstream = None
            up.abort()
            self._fail(UpstreamError(f"upstream refused the request: {exc}"))
            return
        if self.backend_timeout_s:
            if self._backend_timer is not None:
                self._backend_timer.cancel()  # every try gets its own deadline
            self._backend_timer = self.engine.loop.call_later(
                self.backend_timeout_s, self._on_try_timeout
            )
        if request.end_stream:
            return
        replay = self._replay
        if replay and (self.attempt > 1 or self._stale_retried):
            for chunk in replay:
                up.send_data(chunk)
        body = self._body
        self._body = None
        if body:
            self._body_forwarded = True
            for chunk in body:
                up.send_data(chunk)
                self._keep(chunk)
            self._body_size = 0
            self.stream.resume_body()
        if self._body_ended:
            up.send_end(self._trailers)

    def _keep(self, chunk: bytes) -> None:
        """Keep a chunk that went upstream for a replay, while the limit allows."""
        replay = self._replay
        if replay is not None:
            size = self._replay_size + len(chunk)
            if size > self.engine.limits.retry_buffer_bytes:
                self._replay = None
            else:
                replay.append(chunk)
                self._replay_size = size

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
            if self._replay is not None:
                self._keep(data)
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
        cluster = self.cluster
        pool = self.pool
        if cluster is not None and pool is not None:
            cluster.report(pool, status)
        retry = self.retry
        if retry is not None and status in retry.codes:
            if self._retry_allowed():
                self._end_try(status, "")
                up = self.upstream
                self.upstream = None
                if up is not None:
                    up.abort()
                self._schedule_retry()
                return
            self.flags = "URX"
        self._response_started = True
        self._status = status
        if self.set_cookie is not None:
            head.headers.append((b"set-cookie", self.set_cookie))
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
        if self._client_span is not None:
            self._end_try(self._status, "")
        self._finish(self._status, self.flags)

    def on_upstream_error(self, error: UpstreamError) -> None:
        if self._done:
            return
        self.upstream = None
        if (
            self._reused
            and not self._stale_retried
            and not self._response_started
            and (self._replay is not None or not self._body_forwarded)
            and self.pool is not None
        ):
            # A stale pooled connection: one more go on a fresh one, not a retry.
            self._stale_retried = True
            self._reused = False
            self._connecting = self.engine.supervisor.spawn(self._connect(self.pool))
            return
        self._try_failed(error, local=True)

    def on_upstream_writable(self) -> None:
        self.stream.resume_body()

    def on_upstream_read_done(self) -> None:
        if not self._done:
            self.stream.flush()

    # -- tries and retries -----------------------------------------------------------------

    def _try_failed(self, error: UpstreamError, *, local: bool) -> None:
        """The current try got no usable response."""
        if self._client_span is not None:
            self._end_try(self._status or None, error.flag)
        cluster = self.cluster
        pool = self.pool
        if local and cluster is not None and pool is not None:
            cluster.report(pool, 0)
        if self._response_started:
            self._fail(error)
            return
        if self.retry is not None and self._retry_allowed():
            self._schedule_retry()
            return
        if self.retry is not None and self.attempt > 1:
            self.flags = "URX"
        self._fail(error)

    def _end_try(self, status: int | None, flag: str) -> None:
        """End the current try's client span (if any)."""
        client = self._client_span
        if client is not None:
            self._client_span = None
            client.end(status, flag or None)

    def _retry_allowed(self) -> bool:
        retry = self.retry
        cluster = self.cluster
        if retry is None or cluster is None or self._response_started:
            return False
        if self.attempt > retry.retries or self._replay is None:
            return False
        if self._in_retry:
            cluster.breaker.retry_done()
            self._in_retry = False
        limits = self.engine.limits
        if not cluster.breaker.admit_retry(
            limits.retry_budget_percent, limits.retry_budget_min_concurrency
        ):
            return False
        self._in_retry = True
        return True

    def _schedule_retry(self) -> None:
        assert self.retry is not None
        if self._backend_timer is not None:
            self._backend_timer.cancel()
            self._backend_timer = None
        self._release_pool()
        delay = backoff_delay(self.retry.backoff_base_s, self.attempt, random.random())
        self._retry_timer = self.engine.loop.call_later(delay, self._retry_now)

    def _retry_now(self) -> None:
        self._retry_timer = None
        if not self._done:
            self._try()

    # -- endings -------------------------------------------------------------------------------

    def _on_timeout(self) -> None:
        """The whole request ran out of time (``timeouts.request``): no more tries."""
        if self._done:
            return
        self._abort_try()
        self._fail(UpstreamTimeout("upstream request timeout"))

    def _on_try_timeout(self) -> None:
        """One try ran out of time (``timeouts.backendRequest``): retry if allowed."""
        self._backend_timer = None
        if self._done:
            return
        self._abort_try()
        self._try_failed(UpstreamTimeout("upstream request timeout"), local=True)

    def _abort_try(self) -> None:
        up = self.upstream
        self.upstream = None
        if up is not None:
            up.abort()
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
            self._unpend()

    def _fail(self, error: UpstreamError) -> None:
        flag = self.flags or error.flag
        if self._response_started:
            self.stream.abort()
            self._finish(self._status, flag)
            return
        body = (error.reason + "\n").encode("latin-1", "replace")
        self._local(LocalReply(error.status, body=body, flag=flag))

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
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        self._unpend()
        if self._client_span is not None:
            self._end_try(self._status or None, flag or "DC")
        cluster = self.cluster
        if cluster is not None:
            if self._admitted:
                cluster.breaker.requests -= 1
            if self._in_retry:
                cluster.breaker.retry_done()
                self._in_retry = False
        workload = ""
        pool = self.pool
        if pool is not None:
            workload = pool.workload
            pool.active_requests -= 1
        if self.mirrors and flag == "DC":
            for m in self.mirrors:
                m.on_abort()
        self._replay = None
        if self._delayed:
            flag = "DI," + flag if flag else "DI"
        self.flags = flag
        if self.record:
            duration_ms = (time.monotonic() - self.started) * 1000.0
            key = (self.cluster_name, self.protocol, status, self._grpc_status, flag, workload)
            engine = self.engine
            engine.stats.record_request(key, duration_ms, self._req_bytes, self._resp_bytes)
            observer = engine.observer
            if observer is not None:
                observer.exchange_done(self, status, duration_ms)

    @property
    def request_bytes(self) -> int:
        return self._req_bytes

    @property
    def response_bytes(self) -> int:
        return self._resp_bytes

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


def backoff_delay(base_s: float, retry: int, draw: float) -> float:
    """How long retry number ``retry`` (1 for the first) waits: exponential backoff with
    full jitter, Envoy's way. ``draw`` is uniform in [0, 1); the ceiling is
    ``base * (2^retry - 1)``, at most ten times ``base``."""
    ceiling = min(base_s * ((1 << retry) - 1), base_s * 10.0)
    return draw * ceiling


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
