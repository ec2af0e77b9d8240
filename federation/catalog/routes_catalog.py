"""Routes for ``/v1/catalog/*``, ``/v1/health/service/*`` and ``/v1/status/*``.

Registered by ``app``; each handler parses what Consul's handler parses, in the same order,
then calls ``catalog``/``health`` and shapes the answer with ``render``.
"""

from __future__ import annotations

from starlette.responses import Response

from federation.catalog import catalog, health, render
from federation.catalog.errors import HTTPError
from federation.catalog.query import check_dc, check_enterprise, parse_bool, parse_token
from federation.catalog.web import (
    Ctx,
    blocking_read,
    encoded_json_response,
    json_response,
    meta_headers,
    read_json,
)

_FILTER_UNSUPPORTED = (
    "Failed to create boolean expression evaluator: ?filter is not supported by the "
    "isthmus embedded catalog"
)


def _reject_filter(ctx: Ctx) -> None:
    if ctx.params.get("filter"):
        raise HTTPError(400, _FILTER_UNSUPPORTED)


async def register(ctx: Ctx) -> Response:
    check_enterprise(ctx.params, ctx.headers)
    req = await read_json(ctx, catalog.REGISTER_SCHEMA)
    check_dc(ctx.params, ctx.store.datacenter)
    parse_token(ctx.params, ctx.headers)
    catalog.register(ctx.store, req)
    return json_response(ctx, True)


async def deregister(ctx: Ctx) -> Response:
    check_enterprise(ctx.params, ctx.headers)
    req = await read_json(ctx, catalog.DEREGISTER_SCHEMA)
    check_dc(ctx.params, ctx.store.datacenter)
    parse_token(ctx.params, ctx.headers)
    catalog.deregister(ctx.store, req)
    return json_response(ctx, True)


async def services(ctx: Ctx) -> Response:
    node_meta = catalog.parse_node_meta(ctx.params.getlist("node-meta"))
    opts = ctx.options()
    check_enterprise(ctx.params, ctx.headers)
    _reject_filter(ctx)
    result = await blocking_read(ctx, opts, lambda: catalog.list_services(ctx.store, node_meta))
    headers = meta_headers(result, opts)
    if node_meta:
        return json_response(ctx, result.value, headers=headers)
    body = ctx.store.service_list.body(result.index, result.value)  # encoded once per index
    return encoded_json_response(ctx, body, headers=headers)


async def service(ctx: Ctx) -> Response:
    node_meta = catalog.parse_node_meta(ctx.params.getlist("node-meta"))
    opts = ctx.options()
    check_enterprise(ctx.params, ctx.headers)
    _reject_filter(ctx)
    tags = ctx.params.getlist("tag")
    name = ctx.rest
    if not name:
        raise HTTPError(400, "Missing service name")
    peer = ctx.params.get("peer")
    result = await blocking_read(
        ctx, opts, lambda: catalog.service_nodes(ctx.store, name, tags, node_meta)
    )
    # No cluster peering here: an imported (``?peer=``) service has no instances.
    body = [] if peer else [render.service_node(n, s) for n, s in result.value]
    return json_response(ctx, body, headers=meta_headers(result, opts))


async def node(ctx: Ctx) -> Response:
    opts = ctx.options()
    check_enterprise(ctx.params, ctx.headers)
    name = ctx.rest
    if not name:
        raise HTTPError(400, "Missing node name")
    result = await blocking_read(ctx, opts, lambda: catalog.node_services(ctx.store, name))
    headers = meta_headers(result, opts)
    if result.value is None:
        return json_response(ctx, None, headers=headers)
    found, services = result.value
    # Encoded once per node and index; each service's object is reused until it changes.
    body = ctx.store.node_bodies.body(
        found.node.lower(),
        result.index,
        lambda rendered: render.node_services(found, services, rendered),
        render.service,
    )
    return encoded_json_response(ctx, body, headers=headers)


async def health_service(ctx: Ctx) -> Response:
    node_meta = catalog.parse_node_meta(ctx.params.getlist("node-meta"))
    opts = ctx.options()
    check_enterprise(ctx.params, ctx.headers)
    _reject_filter(ctx)
    name = ctx.rest
    if not name:
        raise HTTPError(400, "Missing service name")
    passing = parse_bool(ctx.params, "passing", "Invalid value for ?passing")
    tags = ctx.params.getlist("tag")
    peer = ctx.params.get("peer")
    result = await blocking_read(
        ctx,
        opts,
        lambda: health.service_health(
            ctx.store, name, tags=tags, passing=passing, node_meta=node_meta
        ),
    )
    body = [] if peer else [render.health_entry(i) for i in result.value]
    return json_response(ctx, body, headers=meta_headers(result, opts))


async def status_leader(ctx: Ctx) -> Response:
    return json_response(ctx, ctx.leader)


async def status_peers(ctx: Ctx) -> Response:
    return json_response(ctx, [ctx.leader])
