"""The supervisor: the process an operator starts with ``isthmus gateway run``.

It compiles the configuration, spawns the worker processes and sends each the snapshot,
serves the admin API, reloads on SIGHUP or when the source changes, and drains on SIGTERM.
A new configuration is applied only when it compiles and every worker accepts it; otherwise
the error is logged, kept for ``/config``, and the last good snapshot stays active.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import msgspec

from gateway.admin.server import AdminServer
from gateway.config.errors import ConfigError
from gateway.config.snapshot import Snapshot, encode
from gateway.filters import ratelimit_table
from gateway.process import control
from gateway.process.credentials import (
    CredentialSource,
    CredentialsRefused,
    describe,
    encode_credentials,
)
from gateway.process.sources import SnapshotSource
from gateway.telemetry.render import ProxyIdentity, identity_of, render
from gateway.telemetry.stats import merge
from pki.credentials import Credentials

log = logging.getLogger("isthmus.supervisor")

_WATCH_INTERVAL_S = 1.0


@runtime_checkable
class PushSource(Protocol):
    """A source told of changes as they happen (``gateway.process.control_plane``): the
    watcher waits on it instead of polling, and reports whether each snapshot it loaded was
    applied."""

    def wait_changed(self, timeout_s: float) -> bool: ...

    def report(self, applied: bool, error: str) -> None: ...


@runtime_checkable
class CredentialUser(Protocol):
    """A source that itself connects with the proxy's identity (a control plane over mTLS):
    it gets the first credentials before its first load, and every renewal."""

    description: str

    @property
    def needs_credentials(self) -> bool: ...

    def use_credentials(self, credentials: Credentials) -> None: ...


@dataclass
class SupervisorConfig:
    """How to run a gateway. ``admin`` is ``(host, port)``; ``workers`` processes."""

    source: SnapshotSource
    workers: int = 1
    admin: tuple[str, int] = ("127.0.0.1", 15000)
    identity: ProxyIdentity = field(default_factory=ProxyIdentity)
    watch: bool = True
    role: str = "ingress"
    # The proxy's own identity for mTLS (gateway.process.credentials); None: it has none.
    credentials: CredentialSource | None = None


class StartupError(Exception):
    pass


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.lock = asyncio.Lock()
        self.alive = False

    async def start(self) -> None:
        parent, child = socket.socketpair()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway.process.worker",
                "--control-fd",
                str(child.fileno()),
                "--index",
                str(self.index),
                pass_fds=(child.fileno(),),
            )
        finally:
            child.close()
        self.reader, self.writer = await asyncio.open_connection(sock=parent)
        self.alive = True

    async def ask(self, msg: control.Message, timeout_s: float = 30.0) -> control.Message | None:
        if not self.alive or self.writer is None or self.reader is None:
            return None
        async with self.lock:
            try:
                async with asyncio.timeout(timeout_s):
                    await control.send(self.writer, msg)
                    return await control.receive(self.reader)
            except (TimeoutError, ConnectionError, OSError):
                return None


class GatewaySupervisor:
    def __init__(self, config: SupervisorConfig) -> None:
        self.config = config
        self.snapshot: Snapshot | None = None
        self.last_error = ""
        self.draining = False
        self.ready = False
        self._workers: list[_Worker] = []
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        # The last credentials sent to the workers (sent again to a restarted one).
        self._credentials: control.Credentials | None = None
        self._identity: dict[str, object] | None = None

    # -- admin backend -------------------------------------------------------------------------

    def is_ready(self) -> bool:
        return self.ready and not self.draining

    async def metrics(self) -> bytes:
        dumps = []
        for w in self._workers:
            reply = await w.ask(control.Collect(), timeout_s=5.0)
            if isinstance(reply, control.Collected):
                dumps.append(reply.stats)
        snap = self.snapshot
        version = snap.version if snap else ""
        ident = identity_of(snap.node, self.config.identity) if snap else self.config.identity
        return render(merge(dumps), ident, version, len(dumps))

    def config_dump(self) -> dict[str, Any]:
        snap = self.snapshot
        return {
            "version": snap.version if snap else None,
            "source": self.config.source.description,
            "role": self.config.role,
            "workers": sum(1 for w in self._workers if w.alive),
            "last_error": self.last_error or None,
            "identity": self._identity,
            "snapshot": msgspec.to_builtins(snap) if snap else None,
        }

    async def drain_listeners(self) -> None:
        self.draining = True
        deadline = self.snapshot.limits.drain_timeout_s if self.snapshot else 30.0
        await asyncio.gather(
            *(
                w.ask(control.Drain(deadline_s=deadline, exit=False), deadline + 5)
                for w in self._workers
            )
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> int:
        # The identity first: a control plane served over mTLS needs it for the first poll.
        first, error = await self._first_credentials()
        if error:
            raise StartupError(error)
        try:
            snap = await asyncio.to_thread(self.config.source.load)
        except ConfigError as exc:
            raise StartupError(
                f"invalid configuration in {self.config.source.description}:\n{exc}"
            ) from None
        self._workers = [_Worker(i) for i in range(self.config.workers)]
        for w in self._workers:
            await w.start()
        error = await self._push_credentials(first) if first is not None else ""
        error = error or await self._apply_all(snap)
        await self._report(not error, error)
        if error:
            await self._stop_workers(1.0)
            raise StartupError(error)
        self.snapshot = snap
        self.ready = True
        log.info("serving config %s with %d workers", snap.version, len(self._workers))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn_reload("SIGHUP"))
        admin = AdminServer(self, *self.config.admin)
        try:
            await admin.start()
        except (OSError, SystemExit) as exc:
            await self._stop_workers(1.0)
            raise StartupError(f"admin API: {exc}") from None
        async with asyncio.TaskGroup() as tg:
            tg.create_task(admin.serve())
            follow = (
                tg.create_task(self.config.credentials.follow(self._push_credentials))
                if self.config.credentials is not None
                else None
            )
            watch = tg.create_task(self._watch()) if self.config.watch else None
            monitors = [tg.create_task(self._monitor(w)) for w in self._workers]
            self._tg = tg
            await self._stop.wait()
            self.draining = True
            if watch is not None:
                watch.cancel()
            if follow is not None:
                follow.cancel()
            deadline = self.snapshot.limits.drain_timeout_s if self.snapshot else 30.0
            for m in monitors:
                m.cancel()
            await self._stop_workers(deadline)
            await admin.shutdown()
        return 0

    def _spawn_reload(self, why: str) -> None:
        tg = getattr(self, "_tg", None)
        if tg is not None and not self.draining:
            tg.create_task(self._reload_and_report(why))

    async def reload(self, why: str = "change") -> bool:
        async with self._reload_lock:
            try:
                snap = await asyncio.to_thread(self.config.source.load)
            except ConfigError as exc:
                self._refuse(f"configuration refused ({why}); keeping {self._version()}:\n{exc}")
                return False
            if self.snapshot is not None and snap.version == self.snapshot.version:
                return True
            error = await self._apply_all(snap)
            if error:
                if self.snapshot is not None:
                    await self._apply_all(self.snapshot)
                self._refuse(f"configuration refused ({why}); keeping {self._version()}: {error}")
                return False
            self.snapshot = snap
            self.last_error = ""
            log.warning("applied config %s (%s)", snap.version, why)
            return True

    def _version(self) -> str:
        return self.snapshot.version if self.snapshot else "nothing"

    def _refuse(self, message: str) -> None:
        self.last_error = message
        log.error("%s", message)
        print(message, file=sys.stderr, flush=True)

    async def _apply_all(self, snap: Snapshot) -> str:
        data = encode(snap)
        replies = await asyncio.gather(
            *(w.ask(control.Apply(snapshot=data)) for w in self._workers)
        )
        for w, reply in zip(self._workers, replies, strict=True):
            if not isinstance(reply, control.Result):
                return f"worker {w.index} did not answer"
            if not reply.ok:
                return f"worker {w.index}: {reply.error}"
        return ""

    async def _first_credentials(self) -> tuple[Credentials | None, str]:
        """The proxy's first identity (None without one), or why there is none."""
        source = self.config.credentials
        snapshots = self.config.source
        if source is None:
            if isinstance(snapshots, CredentialUser) and snapshots.needs_credentials:
                return None, (f"{snapshots.description} is served over TLS: the proxy needs an "
                              "identity (--cert/--key/--bundle or the CA service)")  # fmt: skip
            return None, ""
        try:
            credentials = await source.first()
        except CredentialsRefused as exc:
            return None, f"identity from {source.description}: {exc}"
        if isinstance(snapshots, CredentialUser):
            snapshots.use_credentials(credentials)
        return credentials, ""

    async def _push_credentials(self, credentials: Credentials) -> str:
        """Send new credentials to every worker; they use them for new connections. The
        snapshot source (a control plane over mTLS) gets them too."""
        if isinstance(self.config.source, CredentialUser):
            self.config.source.use_credentials(credentials)
        msg = encode_credentials(credentials)
        self._credentials = msg
        self._identity = describe(credentials)
        replies = await asyncio.gather(*(w.ask(msg) for w in self._workers))
        for w, reply in zip(self._workers, replies, strict=True):
            if not (isinstance(reply, control.Result) and reply.ok):
                error = reply.error if isinstance(reply, control.Result) else "no answer"
                log.error("worker %d refused the credentials: %s", w.index, error)
                return f"worker {w.index} refused the credentials: {error}"
        log.info("identity %s (serial %s) sent to the workers", credentials.spiffe_id,
                 self._identity["serial"])  # fmt: skip
        return ""

    async def _watch(self) -> None:
        source = self.config.source
        push = source if isinstance(source, PushSource) else None
        while True:
            if push is not None:
                changed = await asyncio.to_thread(push.wait_changed, _WATCH_INTERVAL_S)
            else:
                await asyncio.sleep(_WATCH_INTERVAL_S)
                try:
                    changed = await asyncio.to_thread(source.changed)
                except OSError:
                    continue
            if changed:
                await self._reload_and_report("file change" if push is None else "control plane")

    async def _reload_and_report(self, why: str) -> None:
        ok = await self.reload(why)
        await self._report(ok, "" if ok else self.last_error)

    async def _report(self, applied: bool, error: str) -> None:
        source = self.config.source
        if isinstance(source, PushSource):
            await asyncio.to_thread(source.report, applied, error)

    async def _monitor(self, w: _Worker) -> None:
        """Restart a worker that died, and give it the current snapshot."""
        while not self.draining:
            assert w.proc is not None
            code = await w.proc.wait()
            w.alive = False
            if self.draining:
                return
            log.error("worker %d exited with %s; restarting", w.index, code)
            await w.start()
            if self._credentials is not None:
                await w.ask(self._credentials)
            if self.snapshot is not None:
                reply = await w.ask(control.Apply(snapshot=encode(self.snapshot)))
                if not (isinstance(reply, control.Result) and reply.ok):
                    log.error("restarted worker %d refused the snapshot", w.index)

    async def _stop_workers(self, deadline_s: float) -> None:
        async def stop(w: _Worker) -> None:
            await w.ask(control.Drain(deadline_s=deadline_s), deadline_s + 5)
            w.alive = False
            if w.writer is not None:
                w.writer.close()
            if w.proc is not None and w.proc.returncode is None:
                try:
                    async with asyncio.timeout(5):
                        await w.proc.wait()
                except TimeoutError:
                    w.proc.kill()
                    await w.proc.wait()

        await asyncio.gather(*(stop(w) for w in self._workers))


def run(config: SupervisorConfig) -> int:
    """Run a gateway until SIGTERM/SIGINT. Returns the process exit code."""
    logging.basicConfig(
        level=os.environ.get("ISTHMUS_LOG_LEVEL", "WARNING"),
        format="%(asctime)s supervisor %(levelname)s %(name)s: %(message)s",
    )
    sup = GatewaySupervisor(config)
    try:
        # Rate limit buckets shared by the workers: made before they start, removed at exit.
        with ratelimit_table.shared_for_workers():
            return asyncio.run(sup.run())
    except StartupError as exc:
        print(f"isthmus: {exc}", file=sys.stderr)
        return 1
