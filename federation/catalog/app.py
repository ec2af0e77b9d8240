"""The Starlette app: Consul's endpoint table and its HTTP-level rules.

Called by ``server`` (and by tests that serve the app in-process). One catch-all route hands
every request to ``dispatch``, which matches paths the way Go's ``ServeMux`` and Consul's
``wrap`` do:

- exact patterns, or the longest prefix pattern ending in ``/`` (the rest of the path is the
  key, service, node or session); a path missing only that slash gets Go's 301 to it;
- an unknown ``/v1/`` path is 404 ``Invalid URL path: not a recognized HTTP API endpoint``;
- a method the endpoint does not take is 405 ``method X not allowed`` with an ``Allow``
  header; ``OPTIONS`` answers the ``Allow`` list;
- ``CatalogError``s become their plain-text status; anything unexpected is logged and
  answered 500, and the server carries on.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from federation.catalog import routes_catalog, routes_kv, routes_session
from federation.catalog.blocking import Notifier
from federation.catalog.errors import CatalogError
from federation.catalog.query import Params
from federation.catalog.state import Store
from federation.catalog.web import Ctx, text_response

log = logging.getLogger(__name__)

Handler = Callable[[Ctx], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    pattern: str
    methods: tuple[str, ...]
    handler: Handler

    @property
    def is_prefix(self) -> bool:
        return self.pattern.endswith("/")


ENDPOINTS = (
    Endpoint("/v1/catalog/register", ("PUT",), routes_catalog.register),
    Endpoint("/v1/catalog/deregister", ("PUT",), routes_catalog.deregister),
    Endpoint("/v1/catalog/services", ("GET",), routes_catalog.services),
    Endpoint("/v1/catalog/service/", ("GET",), routes_catalog.service),
    Endpoint("/v1/catalog/node/", ("GET",), routes_catalog.node),
    Endpoint("/v1/health/service/", ("GET",), routes_catalog.health_service),
    Endpoint("/v1/kv/", ("GET", "PUT", "DELETE"), routes_kv.endpoint),
    Endpoint("/v1/session/create", ("PUT",), routes_session.create),
    Endpoint("/v1/session/destroy/", ("PUT",), routes_session.destroy),
    Endpoint("/v1/session/renew/", ("PUT",), routes_session.renew),
    Endpoint("/v1/session/info/", ("GET",), routes_session.info),
    Endpoint("/v1/session/node/", ("GET",), routes_session.node),
    Endpoint("/v1/session/list", ("GET",), routes_session.list_all),
    Endpoint("/v1/status/leader", ("GET",), routes_catalog.status_leader),
    Endpoint("/v1/status/peers", ("GET",), routes_catalog.status_peers),
)
_EXACT = {e.pattern: e for e in ENDPOINTS if not e.is_prefix}
_PREFIXES = sorted((e for e in ENDPOINTS if e.is_prefix), key=lambda e: -len(e.pattern))

NOT_FOR_PRODUCTION = "isthmus embedded catalog (a stand-in for Consul; not for production)\n"
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


def match(path: str) -> tuple[Endpoint, str] | None:
    exact = _EXACT.get(path)
    if exact is not None:
        return exact, ""
    for endpoint in _PREFIXES:
        if path.startswith(endpoint.pattern):
            return endpoint, path[len(endpoint.pattern) :]
    return None


def create_app(
    store: Store, *, leader: str = "127.0.0.1:8300", seed: int | None = None
) -> Starlette:
    """The app over ``store``. ``leader`` is what ``/v1/status/leader`` names."""
    notifier = Notifier()
    store.subscribe(notifier.publish)
    rng = random.Random(seed)

    async def dispatch(request: Request) -> Response:
        path = request.url.path
        found = match(path)
        if found is None:
            if any(e.pattern == path + "/" for e in _PREFIXES):
                return RedirectResponse(path + "/", status_code=301)
            if path == "/":
                return text_response(200, NOT_FOR_PRODUCTION)
            if "/v1/" in path:
                return text_response(404, "Invalid URL path: not a recognized HTTP API endpoint\n")
            return text_response(
                404,
                "Invalid URL path: if attempting to use the HTTP API, ensure the path starts "
                "with '/v1/'\n",
            )
        endpoint, rest = found
        allow = ",".join(("OPTIONS", *endpoint.methods))
        if request.method == "OPTIONS":
            return text_response(200, "", headers={"Allow": allow})
        if request.method not in endpoint.methods:
            return text_response(
                405, f"method {request.method} not allowed", headers={"Allow": allow}
            )
        ctx = Ctx(
            request=request,
            store=store,
            notifier=notifier,
            params=Params(list(request.query_params.multi_items())),
            rest=rest,
            leader=leader,
            rng=rng,
        )
        try:
            return await endpoint.handler(ctx)
        except CatalogError as exc:
            return text_response(exc.status, exc.reason)
        except Exception as exc:  # a bug must not take the catalog down
            log.exception("catalog: %s %s failed", request.method, path)
            return text_response(500, f"An unexpected error occurred: {exc}")

    app = Starlette(routes=[Route("/{path:path}", dispatch, methods=_ALL_METHODS)])
    app.state.store = store
    app.state.notifier = notifier
    return app
