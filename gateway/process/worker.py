"""A worker process: one event loop running the proxy engine.

Started by the supervisor as ``python -m gateway.process.worker --control-fd N``. It binds
its own ``SO_REUSEPORT`` sockets, applies the snapshots the supervisor sends, reports its
stats when asked, and drains on request, on SIGTERM, or when the supervisor goes away.
Uses uvloop when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import socket
import sys

from gateway.config import snapshot as snapshot_mod
from gateway.process import control, eventloop
from gateway.process.credentials import CredentialsRefused, decode_credentials
from gateway.proxy.engine import ApplyError, Engine

log = logging.getLogger("isthmus.worker")


async def serve(control_fd: int) -> int:
    engine = Engine()
    loop = asyncio.get_running_loop()
    sock = socket.socket(fileno=control_fd)
    reader, writer = await asyncio.open_connection(sock=sock)
    stop = asyncio.Event()
    drain_deadline = [engine.ctx.limits.drain_timeout_s]

    def on_signal() -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    # The supervisor handles SIGHUP (reload); a worker in the same process group ignores it.
    loop.add_signal_handler(signal.SIGHUP, lambda: None)

    async def control_loop() -> None:
        while True:
            msg = await control.receive(reader)
            if msg is None:
                stop.set()
                return
            if isinstance(msg, control.Apply):
                try:
                    snap = snapshot_mod.decode(msg.snapshot)
                    await engine.apply(snap)
                    drain_deadline[0] = snap.limits.drain_timeout_s
                    gc.collect()
                    gc.freeze()  # what survives config load is long-lived; spare the GC
                    await control.send(writer, control.Result(ok=True))
                except ApplyError as exc:
                    await control.send(writer, control.Result(ok=False, error=str(exc)))
            elif isinstance(msg, control.Credentials):
                try:
                    engine.set_credentials(decode_credentials(msg))
                    await control.send(writer, control.Result(ok=True))
                except CredentialsRefused as exc:
                    await control.send(writer, control.Result(ok=False, error=str(exc)))
            elif isinstance(msg, control.Collect):
                await control.send(writer, control.Collected(stats=engine.collect()))
            elif isinstance(msg, control.Drain):
                await engine.drain(msg.deadline_s)
                await control.send(writer, control.Result(ok=True))
                if msg.exit:
                    stop.set()
                    return

    async with asyncio.TaskGroup() as tg:
        ctl = tg.create_task(control_loop())
        await stop.wait()
        if not engine.draining:
            await engine.drain(drain_deadline[0])
        ctl.cancel()
    await engine.aclose()
    writer.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="isthmus-worker")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("ISTHMUS_LOG_LEVEL", "WARNING"),
        format=f"%(asctime)s worker[{args.index}] %(levelname)s %(name)s: %(message)s",
    )
    profile_to = os.environ.get("ISTHMUS_WORKER_PROFILE")
    if profile_to:
        # Deterministic profile of the worker for bench/ investigations; never on by default.
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
        try:
            return _run(args.control_fd)
        finally:
            prof.disable()
            prof.dump_stats(f"{profile_to}.{os.getpid()}")
    return _run(args.control_fd)


def _run(control_fd: int) -> int:
    return eventloop.run(serve(control_fd))


if __name__ == "__main__":
    sys.exit(main())
