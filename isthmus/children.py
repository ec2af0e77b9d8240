"""The demos' child processes: start them, notice an exit nobody asked for, wait until one
answers HTTP 200, and stop them all.

Used by :mod:`isthmus.demo` (one gateway) and :mod:`isthmus.demo_clusters` (a dozen
processes). Each child runs in a session of its own, so that Ctrl-C reaches only the demo,
which decides how they stop: SIGTERM (a gateway drains), then SIGKILL after a grace period.
An unexpected exit marks the run failed, notes why and sets the run's ``stop`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass, field
from pathlib import Path

POLL_S = 0.2


@dataclass(slots=True)
class Child:
    name: str  # for messages: "the <name> exited ..."
    proc: asyncio.subprocess.Process
    log: Path | None = None
    stopping: bool = False


@dataclass(slots=True)
class Children:
    """The children of one demo run, and what went wrong with them."""

    stop: asyncio.Event
    running: list[Child] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: bool = False

    async def start(
        self, name: str, argv: list[str], tg: asyncio.TaskGroup, *, log: Path | None = None
    ) -> Child:
        """Start ``argv`` (its output to ``log``, or inherited) and watch it in ``tg``."""
        out = log.open("ab") if log is not None else None
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT if out is not None else None,
                start_new_session=True,
            )
        finally:
            if out is not None:
                out.close()
        child = Child(name, proc, log)
        self.running.append(child)
        tg.create_task(self._watch(child), name=f"watch {name}")
        return child

    async def _watch(self, child: Child) -> None:
        code = await child.proc.wait()
        if not child.stopping:
            self.failed = True
            where = f"; see {child.log}" if child.log is not None else ""
            self.notes.append(f"the {child.name} exited with code {code}{where}")
            self.stop.set()

    def give_up(self, why: str) -> bool:
        """Fail the run for ``why`` (unless it is stopping already: a child that died has
        said so). Returns False, for ``return children.give_up(...)``."""
        if not self.stop.is_set():
            self.failed = True
            self.notes.append(why)
            self.stop.set()
        return False

    async def wait_ok(
        self, host: str, port: int, path: str, deadline: float
    ) -> tuple[bool, int | None]:
        """Poll ``GET path`` until it answers 200 (True), the loop time passes ``deadline`` or
        the run stops (False); with the last status seen (None: nothing answered)."""
        loop = asyncio.get_running_loop()
        last: int | None = None
        while not self.stop.is_set():
            last = await http_status(host, port, path)
            if last == 200:
                return True, last
            if loop.time() > deadline:
                return False, last
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_S):
                    await self.stop.wait()
        return False, last

    async def stop_all(self, timeout_s: float) -> None:
        """SIGTERM every child, last started first, then SIGKILL those still there after
        ``timeout_s``."""
        for child in reversed(self.running):
            child.stopping = True
            if child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
        for child in reversed(self.running):
            try:
                async with asyncio.timeout(timeout_s):
                    await child.proc.wait()
            except TimeoutError:
                self.notes.append(
                    f"the {child.name} did not stop within {timeout_s:g} s; killed it"
                )
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                await child.proc.wait()


async def http_status(host: str, port: int, path: str) -> int | None:
    """The status code of ``GET path``, or None when nothing answers properly."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    try:
        async with asyncio.timeout(2.0):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(request.encode("ascii"))
                status_line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return None
    parts = status_line.split()
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None
