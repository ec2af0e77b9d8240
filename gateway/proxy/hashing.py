"""The hash key of a request, for DestinationRule ``consistentHash``.

The key comes from one request header (``httpHeaderName``), one cookie (``httpCookie``) or
the client's address (``useSourceIp``). When the cookie is missing and it has a ``ttl``, the
proxy makes one up and sets it on the response, as Envoy does, so that the client sticks to
the endpoint from its next request on. A request with no key gets a random one: it is
balanced, not pinned.

Called by ``gateway.proxy.http``.
"""

from __future__ import annotations

import os
import random

from gateway.config.snapshot import ConsistentHash
from gateway.filters.base import RequestContext
from gateway.upstream.lb import hash_key


def request_hash(config: ConsistentHash, ctx: RequestContext) -> tuple[int, bytes | None]:
    """The key, and a ``Set-Cookie`` value to add to the response (or None)."""
    headers = ctx.request.headers
    if config.header is not None:
        name = config.header.encode("latin-1")
        for k, v in headers:
            if k == name:
                return hash_key(v), None
    elif config.cookie is not None:
        cookie = config.cookie
        value = _cookie(headers, cookie.name.encode("latin-1"))
        if value is not None:
            return hash_key(value), None
        if cookie.ttl_s is not None:
            value = os.urandom(8).hex().encode("ascii")
            attrs = [cookie.name.encode("latin-1") + b"=" + value]
            if cookie.path:
                attrs.append(b"Path=" + cookie.path.encode("latin-1"))
            if cookie.ttl_s > 0:
                attrs.append(b"Max-Age=" + str(int(cookie.ttl_s)).encode())
            attrs.append(b"HttpOnly")
            return hash_key(value), b"; ".join(attrs)
    elif config.use_source_ip and ctx.downstream_address:
        return hash_key(ctx.downstream_address.encode("latin-1")), None
    return random.getrandbits(64), None


def _cookie(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for k, v in headers:
        if k != b"cookie":
            continue
        for part in v.split(b";"):
            key, sep, value = part.strip().partition(b"=")
            if sep and key == name:
                return value
    return None
