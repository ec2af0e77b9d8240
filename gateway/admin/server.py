"""Serves the admin app with uvicorn inside the supervisor's event loop."""

from __future__ import annotations

import uvicorn

from gateway.admin.app import AdminBackend, build_app


class AdminServer:
    def __init__(self, backend: AdminBackend, host: str, port: int) -> None:
        config = uvicorn.Config(
            build_app(backend),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        # The supervisor owns the signals; uvicorn must not install its own.
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]

    async def serve(self) -> None:
        await self.server.serve()

    async def shutdown(self) -> None:
        self.server.should_exit = True
