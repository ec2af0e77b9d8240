"""The load generator of the PKI benchmarks: mTLS handshakes, keep-alive requests, CSR posts.

``python -m bench.pki_client MODE ...`` runs one load from one process and prints one JSON
object on stdout; :mod:`bench.pki_bench` starts several of them pinned to the load core and
adds their counts up. wrk and h2load cannot present a client certificate, and
``openssl s_time`` runs one connection at a time, so this client does the work:

* ``handshake``: ``--connections`` concurrent loops; each opens a TCP connection, does a full
  TLS handshake presenting the client certificate, sends one ``GET /`` with
  ``Connection: close``, reads the answer to the end and closes. Sessions are never resumed:
  no session is ever handed back to ``ssl`` and tickets are refused, and every connection's
  ``session_reused`` is checked.
* ``keepalive``: ``--connections`` persistent HTTP/1.1 connections (TLS with the client
  certificate, or plaintext without ``--cert``), one request in flight on each, for as long
  as the run lasts.
* ``ca``: ``POST /v1/certificates`` to the CA service over HTTPS (``--connections``
  keep-alive connections, the service's certificate checked against ``--ca`` with its host
  name), each with a bootstrap token and a CSR for the token's identity. The CA
  service allows each identity 10 requests at once and then 1 per second, so the client keeps
  a slightly stricter bucket per identity and only sends when one has room; ``budget_waits``
  counts how often none had.

Every process starts its load at ``--start-at`` (a ``time.monotonic()`` value; the clock is
the machine's, so the parent knows when the measured window opens and reads the servers' CPU
over exactly that window). Only answers that complete inside the window, ``--warmup``
seconds after the start and ``--duration`` long, are counted, and ``cpu_s`` is this
process's CPU inside it; ``late_s`` says how late the process was ready. An answer other
than 200 counts as ``bad``, a failed connection or handshake as ``errors``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import socket
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

REQUEST_CLOSE = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
REQUEST_KEEPALIVE = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
#: The CA service's limit is 10 at once then 1/s per identity; stay a little under it.
CA_BURST = 9.0
CA_REFILL_PER_S = 0.9


@dataclass
class Tally:
    """What one process saw inside the measured window."""

    mode: str
    ok: int = 0
    bad: int = 0
    errors: int = 0
    reused_sessions: int = 0
    budget_waits: int = 0
    late_s: float = 0.0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    first_error: str = ""


class Window:
    """The measured window: from ``begin + warmup`` for ``duration`` seconds (monotonic
    clock, which all processes of the machine share)."""

    def __init__(self, begin: float, warmup: float, duration: float) -> None:
        self.begin = begin
        self.start = begin + warmup
        self.end = self.start + duration

    def inside(self) -> bool:
        now = time.monotonic()
        return self.start <= now <= self.end

    def over(self) -> bool:
        return time.monotonic() > self.end


def client_context(cert: Path | None, key: Path | None, ca: Path) -> ssl.SSLContext:
    """TLS 1.3 client context presenting ``cert`` (leaf + chain) and trusting ``ca``.

    Host names are not checked (a workload is known by its SPIFFE ID); the server's chain
    is. Tickets are refused so nothing could be resumed even by accident.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    ctx.options |= ssl.OP_NO_TICKET
    return ctx


def _status(head: bytes) -> int:
    try:
        return int(head[9:12])
    except ValueError:
        return 0


def _note(tally: Tally, status: int) -> None:
    if status == 200:
        tally.ok += 1
    else:
        tally.bad += 1
        tally.statuses[str(status)] = tally.statuses.get(str(status), 0) + 1


# ------------------------------------------------------------------------- handshakes


class _OneShot(asyncio.Protocol):
    """One connection: send the request, collect the answer until the server closes."""

    def __init__(self, done: asyncio.Future[bytes]) -> None:
        self.done = done
        self.data = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tr = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.transport = tr
        tr.write(REQUEST_CLOSE)

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(bytes(self.data))


async def _handshake_loop(
    host: str, port: int, ctx: ssl.SSLContext, window: Window, tally: Tally
) -> None:
    loop = asyncio.get_running_loop()
    while not window.over():
        done: asyncio.Future[bytes] = loop.create_future()
        try:
            transport, _ = await loop.create_connection(
                functools.partial(_OneShot, done), host, port, ssl=ctx, server_hostname=""
            )
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None and ssl_object.session_reused:
                tally.reused_sessions += 1
            answer = await asyncio.wait_for(done, 30.0)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            if window.inside():
                tally.errors += 1
                tally.first_error = tally.first_error or f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.01)
            continue
        if window.inside():
            _note(tally, _status(answer))


# ------------------------------------------------------------------------- keep-alive


class _KeepAlive(asyncio.Protocol):
    """A persistent connection with one request in flight; answers need Content-Length.

    ``next_request`` gives the bytes of the next request, or None to try again in 10 ms.
    """

    def __init__(
        self,
        window: Window,
        tally: Tally,
        closed: asyncio.Future[None],
        next_request: Callable[[], bytes | None] = lambda: REQUEST_KEEPALIVE,
    ) -> None:
        self.window = window
        self.tally = tally
        self.closed = closed
        self.next_request = next_request
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._send()

    def _send(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        request = self.next_request()
        if request is None:
            self.tally.budget_waits += 1
            asyncio.get_running_loop().call_later(0.01, self._send)
            return
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                self._fail("an answer without Content-Length")
                return
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop >= 0 else len(head)])
            total = end + 4 + length
            if len(self.buf) < total:
                return
            if self.window.inside():
                status = _status(head)
                _note(self.tally, status)
                if status != 200 and not self.tally.first_error:
                    self.tally.first_error = self.buf[: min(total, 400)].decode(errors="replace")
            self.buf = self.buf[total:]
            if self.window.over():
                assert self.transport is not None
                self.transport.close()
                return
            self._send()

    def _fail(self, why: str) -> None:
        self.tally.errors += 1
        self.tally.first_error = self.tally.first_error or why
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.window.over():
            self.tally.errors += 1
            self.tally.first_error = self.tally.first_error or f"connection lost: {exc}"
        if not self.closed.done():
            self.closed.set_result(None)


async def _keepalive_conn(
    host: str,
    port: int,
    ctx: ssl.SSLContext | None,
    window: Window,
    tally: Tally,
    next_request: Callable[[], bytes | None] = lambda: REQUEST_KEEPALIVE,
    server_hostname: str = "",
) -> None:
    loop = asyncio.get_running_loop()
    while not window.over():
        closed: asyncio.Future[None] = loop.create_future()
        try:
            transport, _ = await loop.create_connection(
                functools.partial(_KeepAlive, window, tally, closed, next_request),
                host,
                port,
                ssl=ctx,
                server_hostname=server_hostname if ctx is not None else None,
            )
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await closed
        except (OSError, ssl.SSLError) as exc:
            tally.errors += 1
            tally.first_error = tally.first_error or f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.05)


# ------------------------------------------------------------------------ CA service


@dataclass
class _Identity:
    token: str
    body: bytes
    tokens: float = CA_BURST
    updated: float = 0.0


def _take(ids: list[_Identity], start: int) -> int | None:
    """The index of the next identity (round robin from ``start``) with budget, or None."""
    now = time.monotonic()
    for step in range(len(ids)):
        i = (start + step) % len(ids)
        ident = ids[i]
        ident.tokens = min(CA_BURST, ident.tokens + (now - ident.updated) * CA_REFILL_PER_S)
        ident.updated = now
        if ident.tokens >= 1.0:
            ident.tokens -= 1.0
            return i
    return None


def _ca_request(url: str, ident: _Identity) -> bytes:
    """The ``POST /v1/certificates`` request of one identity, as bytes."""
    parts = urlsplit(url)
    return (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {ident.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(ident.body)}\r\n\r\n"
    ).encode() + ident.body


async def _ca_load(
    args: argparse.Namespace, entries: list[dict[str, str]], window: Window, tally: Tally
) -> None:
    """Keep-alive HTTPS connections to the CA service, the service verified by host name."""
    now = time.monotonic()
    ids = [_Identity(e["token"], e["body"].encode(), updated=now) for e in entries]
    requests = [_ca_request(args.url, ident) for ident in ids]
    ctx = ssl.create_default_context(cafile=str(args.ca))
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    cursor = 0

    def next_request() -> bytes | None:
        nonlocal cursor
        i = _take(ids, cursor)
        if i is None:
            return None
        cursor = i + 1
        return requests[i]

    await asyncio.gather(
        *(_keepalive_conn(host, port, ctx, window, tally, next_request, server_hostname=host)
          for _ in range(args.connections))
    )  # fmt: skip


# ------------------------------------------------------------------------------ main


async def _run(args: argparse.Namespace, entries: list[dict[str, str]]) -> Tally:
    tally = Tally(args.mode)
    # Everything costly (contexts, CSRs) is made before the window opens.
    ctx = None
    if args.mode != "ca" and args.ca is not None:
        ctx = client_context(args.cert, args.key, args.ca)
    begin = args.start_at if args.start_at is not None else time.monotonic()
    window = Window(begin, args.warmup, args.duration)
    tally.late_s = round(max(0.0, time.monotonic() - begin), 3)
    await asyncio.sleep(max(0.0, begin - time.monotonic()))
    cpu_task = asyncio.create_task(_window_cpu(window))
    if args.mode == "handshake":
        if ctx is None:
            raise SystemExit("pki_client handshake: --ca (and --cert/--key) are required")
        await asyncio.gather(
            *(_handshake_loop(args.host, args.port, ctx, window, tally)
              for _ in range(args.connections))
        )  # fmt: skip
    elif args.mode == "keepalive":
        await asyncio.gather(
            *(_keepalive_conn(args.host, args.port, ctx, window, tally)
              for _ in range(args.connections))
        )  # fmt: skip
    else:
        await _ca_load(args, entries, window, tally)
    tally.elapsed_s = round(min(time.monotonic(), window.end) - window.start, 3)
    tally.cpu_s = round(await cpu_task, 3)
    return tally


async def _window_cpu(window: Window) -> float:
    """This process's CPU seconds inside the window."""
    await asyncio.sleep(max(0.0, window.start - time.monotonic()))
    cpu0 = time.process_time()
    await asyncio.sleep(max(0.0, window.end - time.monotonic()))
    return time.process_time() - cpu0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.pki_client")
    p.add_argument("mode", choices=["handshake", "keepalive", "ca"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--url", default="", help="ca: the CA service's POST URL")
    p.add_argument("--identities", type=Path, help="ca: JSON list of {token, body}")
    p.add_argument("--cert", type=Path, help="client certificate chain (PEM)")
    p.add_argument("--key", type=Path, help="client key (PEM)")
    p.add_argument("--ca", type=Path, help="trusted roots; without it, keepalive is plaintext")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument(
        "--start-at",
        type=float,
        default=None,
        help="begin at this time.monotonic() value (so several processes start together)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    runner: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    entries: list[dict[str, str]] = []
    if args.mode == "ca":
        entries = json.loads(args.identities.read_text())
    tally = runner(_run(args, entries))
    print(json.dumps(asdict(tally)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
