"""What every route shares: the request context, Consul's response headers and bodies,
bounded body reading, and blocking reads that stop when the client goes away.

Called by ``routes_catalog``, ``routes_kv`` and ``routes_session``; ``app`` builds the
``Ctx``. JSON answers carry ``Content-Type: application/json``; reads also carry
``X-Consul-Index`` (never below 1), ``X-Consul-KnownLeader: true``, ``X-Consul-LastContact:
0``, ``X-Consul-Effective-Consistency`` and ``X-Consul-Query-Backend``. Error answers are
plain text, as Consul's are.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from federation.catalog.blocking import Notifier, block
from federation.catalog.decode import DecodeError, Schema, decode, parse_json
from federation.catalog.errors import HTTPError
from federation.catalog.query import Params, QueryOptions, parse_options
from federation.catalog.state import Result, Store

T = TypeVar("T")

MAX_JSON_BODY_BYTES = 8 * 1024 * 1024
_ENCODER = msgspec.json.Encoder()
_DEFAULT_ACL_POLICY = "allow"  # ACLs are not enabled in the embedded catalog.


@dataclass(slots=True)
class Ctx:
    request: Request
    store: Store
    notifier: Notifier
    params: Params
    rest: str  # the path after the endpoint's prefix
    leader: str
    rng: random.Random
    _headers: dict[str, str] | None = None

    @property
    def headers(self) -> dict[str, str]:
        """The request's headers, lowercased (built on first use)."""
        if self._headers is None:
            self._headers = {k.lower(): v for k, v in self.request.headers.items()}
        return self._headers

    def options(self) -> QueryOptions:
        return parse_options(self.params, self.headers, self.store.datacenter)


def base_headers() -> dict[str, str]:
    return {"X-Consul-Default-ACL-Policy": _DEFAULT_ACL_POLICY}


def meta_headers(result: Result[Any], opts: QueryOptions) -> dict[str, str]:
    return {
        "X-Consul-Index": str(max(1, result.index)),
        "X-Consul-KnownLeader": "true",
        "X-Consul-LastContact": "0",
        "X-Consul-Effective-Consistency": opts.consistency,
        "X-Consul-Query-Backend": "blocking-query",
    }


def json_response(
    ctx: Ctx, obj: Any, *, headers: dict[str, str] | None = None, status: int = 200
) -> Response:
    body = _ENCODER.encode(obj)
    if ctx.params.has("pretty"):
        body = msgspec.json.format(body, indent=4) + b"\n"
    all_headers = base_headers()
    all_headers.update(headers or {})
    return Response(body, status_code=status, media_type="application/json", headers=all_headers)


def encoded_json_response(
    ctx: Ctx, body: bytes, *, headers: dict[str, str] | None = None, status: int = 200
) -> Response:
    """``json_response`` for a body already encoded (a cached view's)."""
    if ctx.params.has("pretty"):
        body = msgspec.json.format(body, indent=4) + b"\n"
    all_headers = base_headers()
    all_headers.update(headers or {})
    return Response(body, status_code=status, media_type="application/json", headers=all_headers)


def text_response(status: int, text: str, *, headers: dict[str, str] | None = None) -> Response:
    all_headers = base_headers()
    all_headers.update(headers or {})
    return Response(text.encode(), status_code=status, media_type="text/plain", headers=all_headers)


async def read_body(ctx: Ctx, limit: int, too_large: Callable[[int], str]) -> bytes:
    """The request body, refused with 413 once it passes ``limit`` bytes (by its
    Content-Length when it has one, else while reading)."""
    length = ctx.request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise HTTPError(413, too_large(int(length)))
    chunks: list[bytes] = []
    size = 0
    async for chunk in ctx.request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, too_large(size))
        chunks.append(chunk)
    return b"".join(chunks)


def _json_too_large(size: int) -> str:
    return f"Request body({size} bytes) too large, max size: {MAX_JSON_BODY_BYTES} bytes."


async def read_json(ctx: Ctx, schema: Schema, *, empty_ok: bool = False) -> dict[str, Any]:
    """Decode the body against ``schema``; 400 ``Request decode failed: ...`` on bad JSON."""
    body = await read_body(ctx, MAX_JSON_BODY_BYTES, _json_too_large)
    if empty_ok and not body:
        return {}
    try:
        return decode(parse_json(body), schema)
    except DecodeError as exc:
        raise HTTPError(400, f"Request decode failed: {exc}") from None


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def blocking_read(ctx: Ctx, opts: QueryOptions, read: Callable[[], Result[T]]) -> Result[T]:
    """Run ``read`` as a Consul blocking query; give up early if the client disconnects."""
    if opts.min_index == 0:
        return read()
    timeout = opts.timeout_s(ctx.rng.random())
    query = asyncio.ensure_future(block(ctx.notifier, read, opts.min_index, timeout))
    gone = asyncio.ensure_future(_disconnected(ctx.request))
    try:
        await asyncio.wait({query, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (query, gone):
            if not task.done():
                task.cancel()
        await asyncio.gather(query, gone, return_exceptions=True)
    if query.cancelled():
        raise HTTPError(499, "client closed request")
    return query.result()
