"""The ``RateLimit`` filter: a local token bucket per key, shared by the worker processes.

Built by ``gateway.filters.chain`` from a ``RateLimitFilter`` (an ``isthmus.dev`` RateLimit
referenced by a route rule's ExtensionRef). On the request path it takes a token from the
request's bucket in the shared table (``gateway.filters.ratelimit_table``); with none left it
answers 429 with ``Retry-After`` (seconds until the next fill) and the IETF draft
(httpapi-ratelimit-headers) ``RateLimit-Limit`` (the bucket size), ``RateLimit-Remaining``
and ``RateLimit-Reset`` (seconds until the next fill, 0 when full), response flag ``RL``. A
gRPC request gets the gRPC form instead: 200 with ``grpc-status: 14`` (UNAVAILABLE, as Envoy
answers a rate-limited gRPC call) and the same headers. On the response path, when
``response_headers`` is set, allowed responses get the three ``RateLimit-*`` headers too
(read from the bucket again; of several limits the one with the fewest tokens left wins).

Keys: ``Route``, one bucket for the rule; ``Header``, one per value of the header (requests
without it share one bucket, so leaving it out does not escape the limit); ``ClientIP``, one
per downstream address; ``PeerIdentity``, one per mTLS peer SPIFFE ID, and per downstream
address for a peer without one (plaintext, or before mTLS is on).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from gateway.codec.messages import Headers, ResponseHead
from gateway.config.snapshot import RateLimitFilter
from gateway.filters.base import LocalReply, RequestContext
from gateway.filters.grpc_status import UNAVAILABLE, grpc_reply, is_grpc
from gateway.filters.ratelimit_table import Bucket, BucketTable, Decision, process_table

_LIMIT = b"ratelimit-limit"
_REMAINING = b"ratelimit-remaining"
_RESET = b"ratelimit-reset"
_OURS = (_LIMIT, _REMAINING, _RESET)
FLAG = "RL"


class RateLimit:
    __slots__ = ("_bucket", "_clock", "_header", "_key", "_limit", "_name", "_prefix",
                 "_response_headers", "_table")  # fmt: skip

    def __init__(
        self,
        config: RateLimitFilter,
        *,
        table: BucketTable | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``table`` defaults to the process's (shared) table; ``clock`` is monotonic seconds,
        the same clock in every worker. Tests pass their own."""
        if config.max_tokens < 1:
            raise ValueError(f"rateLimit.maxTokens: {config.max_tokens} is less than 1")
        if config.tokens_per_fill < 1:
            raise ValueError(f"rateLimit.tokensPerFill: {config.tokens_per_fill} is less than 1")
        if not config.fill_interval_s > 0:
            raise ValueError(f"rateLimit.fillInterval: {config.fill_interval_s}s is not positive")
        if config.key == "Header" and not config.header:
            raise ValueError("rateLimit.key.header: required when the key is Header")
        self._name = config.name
        self._key = config.key
        self._header = config.header.lower().encode("latin-1") if config.header else b""
        self._bucket = Bucket(config.max_tokens, config.tokens_per_fill, config.fill_interval_s)
        self._limit = str(config.max_tokens).encode()
        self._response_headers = config.response_headers
        # The bucket's identity: the rule, the object and the bucket's shape. A reload that
        # keeps all three keeps the buckets; a changed shape starts afresh.
        identity = (config.scope, config.name, config.max_tokens, config.tokens_per_fill,
                    repr(config.fill_interval_s), config.key, config.header or "")  # fmt: skip
        self._prefix = "\x00".join(str(part) for part in identity).encode() + b"\x00"
        self._table = table if table is not None else process_table()
        self._clock = clock

    def key_of(self, ctx: RequestContext) -> bytes:
        """The bucket key of this request."""
        kind = self._key
        if kind == "Route":
            return self._prefix
        if kind == "Header":
            value = ctx.request.get(self._header)
            return self._prefix + (b"\x00" + value if value is not None else b"\x01")
        if kind == "PeerIdentity" and ctx.peer_principal:
            return self._prefix + b"peer\x00" + ctx.peer_principal.encode()
        return self._prefix + b"ip\x00" + ctx.downstream_address.encode()

    def on_request(self, ctx: RequestContext) -> LocalReply | None:
        decision = self._table.take(self.key_of(ctx), self._bucket, self._clock())
        if decision.allowed:
            return None
        retry_after = str(max(1, math.ceil(decision.reset_s))).encode()
        headers = [(b"retry-after", retry_after), *self.headers(decision)]
        if is_grpc(ctx.request):
            return grpc_reply(UNAVAILABLE, "rate limited", FLAG, headers)
        return LocalReply(429, headers, b"rate limited\n", flag=FLAG)

    def on_response(self, ctx: RequestContext, response: ResponseHead) -> None:
        if not self._response_headers:
            return
        decision = self._table.peek(self.key_of(ctx), self._bucket, self._clock())
        merge_headers(response.headers, decision.remaining, self.headers(decision))

    def headers(self, decision: Decision) -> Headers:
        """``RateLimit-Limit``, ``-Remaining`` and ``-Reset`` for a decision."""
        reset = 0 if decision.reset_s <= 0 else max(1, math.ceil(decision.reset_s))
        return [
            (_LIMIT, self._limit),
            (_REMAINING, str(decision.remaining).encode()),
            (_RESET, str(reset).encode()),
        ]

    def __repr__(self) -> str:
        b = self._bucket
        return (
            f"<RateLimit {self._name} {b.max_tokens} tokens +{b.tokens_per_fill}"
            f"/{b.fill_interval_s:g}s by {self._key}>"
        )


def merge_headers(headers: Headers, remaining: int, ours: Headers) -> None:
    """Put ``ours`` in ``headers`` unless they already hold a limit with fewer tokens left."""
    for k, v in headers:
        if k == _REMAINING:
            try:
                if int(v) <= remaining:
                    return
            except ValueError:
                pass
            break
    headers[:] = [(k, v) for k, v in headers if k not in _OURS]
    headers.extend(ours)
