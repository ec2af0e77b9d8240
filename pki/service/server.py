"""Serves the CA service app with uvicorn over TLS; ``isthmus pki serve`` runs it until SIGTERM.

:class:`CaServer` binds the listen address, serves the app (:func:`pki.service.app.build_app`)
with the service's own certificate (:mod:`pki.service.server_cert`), and reissues that
certificate at half its lifetime. The listening context is a
:func:`~pki.tls_context.switching_server_context`, so a reissued certificate is used by the
next handshake and live connections are not touched.

uvicorn normally takes SIGINT/SIGTERM for itself; here the owner decides when to stop
(:meth:`CaServer.stop`, or the signal handlers of :func:`serve_until_signalled`), so the server
can be embedded in the federation controller's loop and in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Generator
from types import TracebackType

import uvicorn
from starlette.applications import Starlette

from pki.errors import PkiError
from pki.service.server_cert import ServerCertificate
from pki.tls_context import switching_server_context

log = logging.getLogger(__name__)

_GRACEFUL_SHUTDOWN_S = 5
_RENEW_RETRY_S = 60.0


class _Server(uvicorn.Server):
    """A uvicorn server that leaves the signals to its owner."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port). Raises OSError."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class CaServer:
    """The CA service on one address. ``async with CaServer(...) as server`` serves until the
    block ends; :attr:`url` is where clients reach it."""

    def __init__(
        self, app: Starlette, certificate: ServerCertificate, host: str, port: int
    ) -> None:
        self.app = app
        self.certificate = certificate
        self.host = host
        self.port = port
        self._sock: socket.socket | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        shown = f"[{host}]" if ":" in host else host
        return f"https://{shown}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving (in a task this object owns and :meth:`stop` awaits)."""
        self._sock = bind(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
        )
        config.load()
        # After load(): uvicorn would build its context from files; ours comes from memory
        # and switches to the current certificate on every handshake.
        config.ssl = switching_server_context(
            self.certificate.context, require_client_cert=False, alpn=("http/1.1",)
        )
        self._server = _Server(config)
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(self._server, self._sock), name="ca-service")
        while not self._server.started:
            if self._task.done():
                await self._task
                raise OSError(f"the CA service did not start on {self.host}:{self.port}")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (up to 5 s), close the socket."""
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            try:
                await asyncio.shield(self._task)
            finally:
                self._task = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def wait_stopped(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def __aenter__(self) -> CaServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _run(self, server: _Server, sock: socket.socket) -> None:
        async with asyncio.TaskGroup() as tasks:
            renewer = tasks.create_task(self._renew_certificate())
            try:
                await server.serve(sockets=[sock])
            finally:
                renewer.cancel()

    async def _renew_certificate(self) -> None:
        while True:
            try:
                await asyncio.wait_for(
                    self._stopping.wait(), timeout=max(1.0, self.certificate.renew_due_in())
                )
                return
            except TimeoutError:
                pass
            try:
                self.certificate.renew()
            except PkiError as exc:  # e.g. the CA expired: keep the current one, try again
                log.error("CA service: cannot renew its server certificate: %s", exc)
                await asyncio.sleep(_RENEW_RETRY_S)


async def serve_until_signalled(server: CaServer, announce: Callable[[str], None]) -> None:
    """Start ``server``, call ``announce`` with its URL, serve until SIGTERM or SIGINT (or until
    the server stops by itself), then stop it cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
        try:
            announce(server.url)
            async with asyncio.TaskGroup() as tasks:
                stopped = tasks.create_task(server.wait_stopped())
                signalled = tasks.create_task(stop.wait())
                await asyncio.wait({stopped, signalled}, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                signalled.cancel()
        finally:
            await server.stop()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
