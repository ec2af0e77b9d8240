"""Blocking queries: hold a read until its index passes the client's, or its wait runs out.

The app creates one ``Notifier`` and subscribes it to the store; a blocking read registers a
future under the topics its result depends on (``Result.topics``), and a commit resolves
only the futures of the topics it touched, so a write to one service does not wake the
watchers of all the others. ``block`` is Consul's ``blockingQuery`` loop: no index (or 0)
answers at once; otherwise re-run the read on every wake-up until its index is strictly
greater than the client's, and on timeout answer with the current data and index.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from federation.catalog.state import Result

T = TypeVar("T")


class Notifier:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._closed = False

    def close(self) -> None:
        """Shutting down: answer every held query now, and hold no new one."""
        self._closed = True
        self.publish(frozenset(self._waiters))

    def publish(self, topics: frozenset[str]) -> None:
        """A store listener: wake every waiter on any of ``topics``."""
        for topic in topics:
            for fut in self._waiters.pop(topic, ()):
                if not fut.done():
                    fut.set_result(None)

    @property
    def waiting(self) -> int:
        return len({id(f) for futs in self._waiters.values() for f in futs})

    async def wait(self, topics: frozenset[str], timeout_s: float) -> bool:
        """Wait until one of ``topics`` changes (True) or ``timeout_s`` passes (False)."""
        if self._closed:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for topic in topics:
            self._waiters.setdefault(topic, set()).add(fut)
        try:
            async with asyncio.timeout(timeout_s):
                await fut
            return True
        except TimeoutError:
            return False
        finally:
            for topic in topics:
                waiters = self._waiters.get(topic)
                if waiters is not None:
                    waiters.discard(fut)
                    if not waiters:
                        del self._waiters[topic]


async def block(
    notifier: Notifier, read: Callable[[], Result[T]], min_index: int, timeout_s: float
) -> Result[T]:
    result = read()
    if min_index == 0 or result.index > min_index:
        return result
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return result
        changed = await notifier.wait(result.topics, remaining)
        result = read()
        if result.index > min_index or not changed:
            return result
