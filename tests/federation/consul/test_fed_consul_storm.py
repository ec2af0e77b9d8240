"""Robustness: a storm of Consul errors and timeouts, and even an unexpected exception,
never ends ``ConsulSync.run()``; it logs, retries with backoff and converges afterwards.

The clients are real py-consul clients on the shared catalog; ``Storm`` wraps some of their
methods so that, while it blows, each call fails in turn with a 5xx, a client timeout, a
dropped connection, a malformed index or a hang longer than the request deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import consul
import pytest

from federation.consul import ConsulSync
from tests.federation.consul.consul_sync_support import (
    Cluster,
    Running,
    Writes,
    eventually,
    make_sync,
    svc,
)


class Storm:
    """Wraps the given py-consul methods of every client a factory makes."""

    def __init__(self, methods: list[tuple[str, str]]) -> None:
        self.methods = methods
        self.blowing = False
        self.raised = 0
        self._kinds = itertools.cycle(["5xx", "timeout", "reset", "index", "hang"])

    async def _fail(self) -> Any:
        self.raised += 1
        kind = next(self._kinds)
        if kind == "5xx":
            raise consul.ConsulException("500 rpc error: leadership lost while committing")
        if kind == "timeout":
            raise TimeoutError
        if kind == "reset":
            raise aiohttp.ServerDisconnectedError()
        if kind == "index":
            return ("not-a-number", None)
        await asyncio.sleep(3600)  # longer than any deadline: the caller's timeout fires

    def factory(self, base: Callable[[], Any]) -> Callable[[], Any]:
        def make() -> Any:
            client = base()
            for group, name in self.methods:
                target = getattr(client, group)
                real = getattr(target, name)

                def wrapped(*args: Any, _real: Any = real, **kw: Any) -> Any:
                    if self.blowing:
                        return self._fail()
                    return _real(*args, **kw)

                setattr(target, name, wrapped)
            return client

        return make


EVERY_CALL = [
    ("session", "renew"),
    ("session", "create"),
    ("kv", "get"),
    ("kv", "put"),
    ("catalog", "node"),
    ("catalog", "register"),
    ("catalog", "deregister"),
    ("health", "service"),
]


async def test_an_error_and_timeout_storm_does_not_end_run(
    consul_addr: tuple[str, int], names: Callable[[str], str], running: Running
) -> None:
    east, west = Cluster(names("east")), Cluster(names("west"))
    east.synced.set()
    west.synced.set()
    east.exports[:] = [svc("web")]
    storm = Storm(EVERY_CALL)
    e = running.start(make_sync(storm.factory(Writes().factory(*consul_addr)), east))
    w = running.start(make_sync(Writes().factory(*consul_addr), west))
    web = (east.name, "default", "web")
    await eventually(lambda: web in w.imports and e.is_leader, 5, "web imported")

    storm.blowing = True
    east.exports.append(svc("api"))
    e.notify()
    # Longer than the request deadline (2 s), so every loop of east sees errors, timeouts
    # and hangs: the renewals too, which makes it step down (TTL 10 s * 0.8).
    await asyncio.sleep(9.0)
    assert storm.raised > 20
    task = running.tasks[id(e)]
    assert not task.done(), task
    assert web in w.imports  # west never lost it

    storm.blowing = False
    api = (east.name, "default", "api")
    await eventually(lambda: api in w.imports, 15, "the change made during the storm")
    await eventually(lambda: e.is_leader, 15, "east leads again")
    assert not task.done()
    assert e.metrics()["consul_export_errors"] > 0


async def test_an_unexpected_exception_restarts_only_that_component(
    consul_addr: tuple[str, int],
    names: Callable[[str], str],
    running: Running,
    caplog: pytest.LogCaptureFixture,
) -> None:
    east, west = Cluster(names("east")), Cluster(names("west"))
    east.synced.set()
    west.synced.set()
    east.exports[:] = [svc("web")]
    e = running.start(make_sync(Writes().factory(*consul_addr), east))
    w: ConsulSync = make_sync(Writes().factory(*consul_addr), west)
    real_run = w.importer.run
    calls = 0

    async def crashing_run() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            async with asyncio.TaskGroup() as tasks:  # the shape of the bench's crash

                async def bug() -> None:
                    raise KeyError("an answer nobody expected")

                tasks.create_task(bug())
        await real_run()

    w.importer.run = crashing_run  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="isthmus.federation.consul.sync"):
        running.start(w)
        web = (east.name, "default", "web")
        await eventually(lambda: web in w.imports, 5, "web imported after the restart")
    assert calls == 2 and w.metrics()["consul_sync_restarts"] == 1.0
    assert w.is_leader and e.is_leader  # the other components never stopped
    failed = [r for r in caplog.records if "failed" in r.getMessage()]
    assert failed and "KeyError" in failed[0].getMessage()
    assert "an answer nobody expected" in failed[0].getMessage()
    assert failed[0].exc_info is not None
