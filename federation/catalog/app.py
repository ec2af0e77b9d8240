"""The ASGI app: Consul's endpoint table and its HTTP-level rules.

Called by ``server`` (and by tests that serve the app in-process). :class:`CatalogApp` hands
every request to ``dispatch`` (no router, no middleware: Starlette's ``Request`` and
``Response`` only), which matches paths the way Go's ``ServeMux`` and Consul's ``wrap`` do:

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
from urllib.parse import parse_qsl

from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import Receive, Scope, Send

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
) -> CatalogApp:
    """The app over ``store``. ``leader`` is what ``/v1/status/leader`` names."""
    notifier = Notifier()
    store.subscribe(notifier.publish)
    rng = random.Random(seed)

    async def dispatch(request: Request) -> Response:
        path = url_path(request.scope)
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
            params=Params(query_items(request.scope)),
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

    return CatalogApp(dispatch, store, notifier)


def url_path(scope: Scope) -> str:
    r"""``request.url.path`` without building the URL: the path with ``?``, ``#`` and ``\``
    escaped, as Starlette's ``URL`` has it."""
    path: str = scope["path"]
    return path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")


def query_items(scope: Scope) -> list[tuple[str, str]]:
    """``request.query_params.multi_items()`` without the multidict: the query string's
    pairs in order, blank values kept, as Starlette parses them."""
    raw: bytes = scope.get("query_string", b"")
    return parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if raw else []


class CatalogApp:
    """The ASGI app: every HTTP request goes straight to ``dispatch``. ``dispatch`` does all
    the routing and answers every error itself, so Starlette's router and middleware stack
    (a quarter of the CPU of a ``PUT /v1/catalog/register``) are left out; ``Request`` and
    ``Response`` are still Starlette's. ``state`` holds the store and the notifier."""

    def __init__(
        self, dispatch: Callable[[Request], Awaitable[Response]], store: Store, notifier: Notifier
    ) -> None:
        self._dispatch = dispatch
        self.state = State()
        self.state.store = store
        self.state.notifier = notifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope, receive, send)
            response = await self._dispatch(request)
            await response(scope, receive, send)
        elif scope["type"] == "lifespan":  # nothing to start or stop
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        else:  # a WebSocket: Consul's API has none
            await send({"type": "websocket.close", "code": 1000})
