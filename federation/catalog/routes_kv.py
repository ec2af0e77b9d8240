"""The ``/v1/kv/<key>`` route: GET (one key, ``recurse``, ``keys``/``separator``, ``raw``),
PUT (``flags``, ``cas``, ``acquire``, ``release``) and DELETE (``recurse``, ``cas``).

Registered by ``app``; the operations are in ``kv``. Consul's HTTP-level answers: a missing
key (or an empty prefix) is 404 with an empty body but the ``X-Consul-*`` headers set;
``?keys`` on the root prefix is ``[]``; two of cas/acquire/release (or recurse with cas on
DELETE) is 400 ``Conflicting flags: ...``; a value over 512 KiB is 413; a bad ``flags`` or
``cas`` number is Go's ``strconv.ParseUint`` error (500).
"""

from __future__ import annotations

import json

from starlette.responses import Response

from federation.catalog import kv, render
from federation.catalog.errors import CatalogError, HTTPError
from federation.catalog.query import check_enterprise
from federation.catalog.web import (
    Ctx,
    base_headers,
    blocking_read,
    json_response,
    meta_headers,
    read_body,
)

_DOCS = "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size"


def _too_large(size: int) -> str:
    return (
        f"Request body({size} bytes) too large, max size: {kv.MAX_VALUE_BYTES} bytes. See {_DOCS}."
    )


def _parse_uint(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise CatalogError(f"strconv.ParseUint: parsing {json.dumps(text)}: invalid syntax")
    value = int(text)
    if value >= 1 << 64:
        raise CatalogError(f"strconv.ParseUint: parsing {json.dumps(text)}: value out of range")
    return value


def _conflicting(ctx: Ctx, *flags: str) -> None:
    if sum(1 for f in flags if ctx.params.has(f)) > 1:
        raise HTTPError(400, f"Conflicting flags: {ctx.params.encode()}\n")


async def endpoint(ctx: Ctx) -> Response:
    opts = ctx.options()
    check_enterprise(ctx.params, ctx.headers)
    key = ctx.rest
    method = ctx.request.method
    if method == "GET":
        if ctx.params.has("keys"):
            sep = ctx.params.get("separator") or ctx.params.get("seperator")
            keys = await blocking_read(ctx, opts, lambda: kv.list_keys(ctx.store, key, sep))
            if not keys.value and key:
                return Response(status_code=404, headers=base_headers() | meta_headers(keys, opts))
            return json_response(ctx, keys.value, headers=meta_headers(keys, opts))
        if ctx.params.has("recurse"):
            many = await blocking_read(ctx, opts, lambda: kv.list_prefix(ctx.store, key))
            if not many.value:
                return Response(status_code=404, headers=base_headers() | meta_headers(many, opts))
            body = [render.dir_entry(e) for e in many.value]
            return json_response(ctx, body, headers=meta_headers(many, opts))
        if not key:
            raise HTTPError(400, "Missing key name")
        one = await blocking_read(ctx, opts, lambda: kv.get(ctx.store, key))
        headers = base_headers() | meta_headers(one, opts)
        if one.value is None:
            return Response(status_code=404, headers=headers)
        if ctx.params.has("raw"):
            headers |= {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
            return Response(one.value.value or b"", media_type="text/plain", headers=headers)
        return json_response(ctx, [render.dir_entry(one.value)], headers=meta_headers(one, opts))
    if method == "PUT":
        return await _put(ctx, key)
    return _delete(ctx, key)


async def _put(ctx: Ctx, key: str) -> Response:
    if not key:
        raise HTTPError(400, "Missing key name")
    _conflicting(ctx, "cas", "acquire", "release")
    flags = _parse_uint(ctx.params.get("flags")) if ctx.params.has("flags") else 0
    cas_index = _parse_uint(ctx.params.get("cas")) if ctx.params.has("cas") else None
    value = await read_body(ctx, kv.MAX_VALUE_BYTES, _too_large)
    store = ctx.store
    if ctx.params.has("acquire"):
        ok = kv.acquire(store, key, value, flags, ctx.params.get("acquire"))
    elif ctx.params.has("release"):
        ok = kv.release(store, key, value, flags, ctx.params.get("release"))
    elif cas_index is not None:
        ok = kv.cas(store, key, value, flags, cas_index)
    else:
        ok = kv.put(store, key, value, flags)
    return json_response(ctx, ok)


def _delete(ctx: Ctx, key: str) -> Response:
    _conflicting(ctx, "recurse", "cas")
    if ctx.params.has("recurse"):
        return json_response(ctx, kv.delete_tree(ctx.store, key))
    if not key:
        raise HTTPError(400, "Missing key name")
    if ctx.params.has("cas"):
        return json_response(ctx, kv.delete_cas(ctx.store, key, _parse_uint(ctx.params.get("cas"))))
    return json_response(ctx, kv.delete(ctx.store, key))
