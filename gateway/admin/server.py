"""Serves the admin app with uvicorn inside the supervisor's event loop.

uvicorn's ``Server.serve`` installs its own SIGINT/SIGTERM handlers, which would take the
signals away from the supervisor (it must drain the workers first). So the server is driven
through its startup, main loop and shutdown steps, which leave signals alone.
"""

from __future__ import annotations

import uvicorn

from gateway.admin.app import AdminBackend, build_app


class AdminServer:
    def __init__(self, backend: AdminBackend, host: str, port: int) -> None:
        self.config = uvicorn.Config(
            build_app(backend),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self.server = uvicorn.Server(self.config)

    async def start(self) -> None:
        """Bind the admin socket; raises SystemExit (from uvicorn) when it cannot."""
        if not self.config.loaded:
            self.config.load()
        self.server.lifespan = self.config.lifespan_class(self.config)
        await self.server.startup()
        if self.server.should_exit:
            raise OSError(f"cannot serve the admin API on {self.config.host}:{self.config.port}")

    async def serve(self) -> None:
        await self.server.main_loop()
        await self.server.shutdown()

    async def shutdown(self) -> None:
        self.server.should_exit = True
