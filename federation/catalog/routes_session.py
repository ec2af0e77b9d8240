"""Routes for ``/v1/session/*``: create, destroy, renew, info, node, list.

Registered by ``app``; the operations are in ``sessions``. As in Consul, create and destroy
parse only ``dc`` and the token; a missing ID is 400 ``Missing session``; renewing an unknown
session is 404 ``Session id '<id>' not found``; info on an unknown session is ``[]``.
"""

from __future__ import annotations

from starlette.responses import Response

from federation.catalog import render, sessions
from federation.catalog.durations import DurationError
from federation.catalog.errors import HTTPError
from federation.catalog.query import check_dc, check_enterprise, parse_token
from federation.catalog.web import Ctx, blocking_read, json_response, meta_headers, read_json


async def create(ctx: Ctx) -> Response:
    check_dc(ctx.params, ctx.store.datacenter)
    parse_token(ctx.params, ctx.headers)
    check_enterprise(ctx.params, ctx.headers)
    req = await read_json(ctx, sessions.SESSION_SCHEMA, empty_ok=True)
    if "LockDelay" in req:
        try:
            req["LockDelay"] = sessions.lock_delay_ns(req["LockDelay"])
        except (DurationError, ValueError) as exc:
            raise HTTPError(400, f"Request decode failed: {exc}") from None
    session_id = sessions.create(ctx.store, req)
    return json_response(ctx, {"ID": session_id})


def _session_id(ctx: Ctx) -> str:
    if not ctx.rest:
        raise HTTPError(400, "Missing session")
    return ctx.rest


async def destroy(ctx: Ctx) -> Response:
    check_dc(ctx.params, ctx.store.datacenter)
    parse_token(ctx.params, ctx.headers)
    check_enterprise(ctx.params, ctx.headers)
    sessions.destroy(ctx.store, _session_id(ctx))
    return json_response(ctx, True)


async def renew(ctx: Ctx) -> Response:
    ctx.options()
    check_enterprise(ctx.params, ctx.headers)
    session_id = _session_id(ctx)
    session = sessions.renew(ctx.store, session_id)
    if session is None:
        raise HTTPError(404, f"Session id '{session_id}' not found")
    return json_response(ctx, [render.session(session)])


async def info(ctx: Ctx) -> Response:
    opts = ctx.options()
    check_enterprise(ctx.params, ctx.headers)
    session_id = _session_id(ctx)
    result = await blocking_read(ctx, opts, lambda: sessions.info(ctx.store, session_id))
    body = [render.session(s) for s in result.value]
    return json_response(ctx, body, headers=meta_headers(result, opts))


async def node(ctx: Ctx) -> Response:
    opts = ctx.options()
    check_enterprise(ctx.params, ctx.headers)
    if not ctx.rest:
        raise HTTPError(400, "Missing node name")
    name = ctx.rest
    result = await blocking_read(ctx, opts, lambda: sessions.node_sessions(ctx.store, name))
    body = [render.session(s) for s in result.value]
    return json_response(ctx, body, headers=meta_headers(result, opts))


async def list_all(ctx: Ctx) -> Response:
    opts = ctx.options()
    check_enterprise(ctx.params, ctx.headers)
    result = await blocking_read(ctx, opts, lambda: sessions.list_all(ctx.store))
    body = [render.session(s) for s in result.value]
    return json_response(ctx, body, headers=meta_headers(result, opts))
