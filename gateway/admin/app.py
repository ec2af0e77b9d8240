"""The admin API: a Starlette app on the loopback admin address.

``GET /ready`` (200 when serving, 503 while starting or draining), ``GET /metrics``
(Prometheus text for all workers, rendered at scrape time), ``GET /config`` (the active
snapshot, its version and the last refused change) and ``POST /drain`` (stop accepting and
finish in-flight requests; the process stays up until SIGTERM).
"""

from __future__ import annotations

from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class AdminBackend(Protocol):
    def is_ready(self) -> bool: ...

    async def metrics(self) -> bytes: ...

    def config_dump(self) -> dict[str, Any]: ...

    async def drain_listeners(self) -> None: ...


def build_app(backend: AdminBackend) -> Starlette:
    async def ready(request: Request) -> Response:
        if backend.is_ready():
            return PlainTextResponse("ready\n")
        return PlainTextResponse("not ready\n", status_code=503)

    async def metrics(request: Request) -> Response:
        return Response(await backend.metrics(), media_type=PROMETHEUS_TEXT)

    async def config(request: Request) -> Response:
        return JSONResponse(backend.config_dump())

    async def drain(request: Request) -> Response:
        await backend.drain_listeners()
        return JSONResponse({"draining": True})

    return Starlette(
        routes=[
            Route("/ready", ready),
            Route("/metrics", metrics),
            Route("/config", config),
            Route("/drain", drain, methods=["POST"]),
        ]
    )
