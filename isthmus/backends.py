"""Echo backends for ``isthmus demo``: small HTTP/1.1 servers that describe each request.

Each backend answers every method on every path with JSON naming itself and echoing the
request it got (method, path, query, HTTP version, headers), so that a client talking to it
through the gateway sees which backend the route picked and what the gateway's filters
changed on the way. They run as uvicorn servers inside the caller's event loop; the caller
(``isthmus.demo``) owns their tasks and their sockets. ``python -m isthmus.backends NAME
HOST PORT`` runs one on its own until SIGTERM or SIGINT (the network-namespace tests start it
inside a namespace that way).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Generator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def echo_app(name: str) -> Starlette:
    """A Starlette app that answers every request with a JSON description of it."""

    async def echo(request: Request) -> Response:
        body = await request.body()
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return JSONResponse(
            {
                "backend": name,
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "http_version": request.scope.get("http_version", ""),
                "headers": headers,
                "body_bytes": len(body),
            },
            headers={"x-backend": name},
        )

    return Starlette(routes=[Route("/{path:path}", echo, methods=_METHODS)])


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its owner.

    ``uvicorn.Server.serve`` takes SIGINT and SIGTERM for itself and raises them again when
    it stops; several servers in one loop would fight over them, and the demo already
    decides when everything stops.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class Backend:
    """One echo backend bound to ``host:port``.

    :meth:`bind` opens the listening socket at once, so a port already in use is reported
    before anything else starts. :meth:`serve` runs until :meth:`stop` is called.
    """

    def __init__(self, name: str, host: str, port: int) -> None:
        self.name = name
        self.host = host
        self.port = port
        self._sock: socket.socket | None = None
        config = uvicorn.Config(
            echo_app(name),
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._server = _Server(config)

    def __repr__(self) -> str:
        return f"<Backend {self.name} {self.host}:{self.port}>"

    @property
    def started(self) -> bool:
        return self._server.started

    def bind(self) -> None:
        """Open the listening socket; raises ``OSError`` if the address is taken."""
        self._sock = socket.create_server((self.host, self.port), reuse_port=False)

    async def serve(self) -> None:
        """Serve until :meth:`stop`; closes the socket when done."""
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        try:
            await self._server.serve(sockets=[self._sock])
        finally:
            self._sock.close()

    def close(self) -> None:
        """Close the listening socket of a backend that will not :meth:`serve`."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def stop(self) -> None:
        """Ask the server to finish its in-flight requests and return from :meth:`serve`."""
        self._server.should_exit = True


async def _serve_until_signalled(backend: Backend) -> None:
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, backend.stop)
    await backend.serve()


def main(argv: list[str] | None = None) -> int:
    import asyncio
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or not args[2].isdigit():
        print("usage: python -m isthmus.backends NAME HOST PORT", file=sys.stderr)
        return 2
    asyncio.run(_serve_until_signalled(Backend(args[0], args[1], int(args[2]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
