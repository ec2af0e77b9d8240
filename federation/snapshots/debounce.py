"""Coalesce bursts of changes into one action.

Used by :class:`federation.snapshots.hub.SnapshotHub`: the controller's sources may change
many objects in a row (a relist, a rollout); recompiling every proxy's snapshot after each
would be wasted work and would push half-updated states. :class:`Debouncer` runs its action
once the changes have been quiet for ``quiet_s`` or, during a burst that never pauses,
``max_delay_s`` after the burst's first change, whichever comes first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Debouncer:
    """Call ``fire`` after a burst of :meth:`poke` calls. Must be poked from the event loop
    that runs it; ``fire`` runs there too, synchronously."""

    def __init__(
        self,
        fire: Callable[[], None],
        *,
        quiet_s: float = 0.1,
        max_delay_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fire = fire
        self.quiet_s = quiet_s
        self.max_delay_s = max_delay_s
        self._clock = clock
        self._first: float | None = None
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> bool:
        return self._first is not None

    def poke(self) -> None:
        now = self._clock()
        if self._first is None:
            self._first = now
        self._last = now
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._wait())

    def flush(self) -> None:
        """Fire now if a burst is pending."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._first is not None:
            self._first = None
            self._fire()

    async def aclose(self) -> None:
        """Forget a pending burst without firing."""
        task, self._task = self._task, None
        self._first = None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _wait(self) -> None:
        while self._first is not None:
            due = min(self._last + self.quiet_s, self._first + self.max_delay_s)
            delay = due - self._clock()
            if delay <= 0:
                break
            await asyncio.sleep(delay)
        self._task = None
        if self._first is not None:
            self._first = None
            self._fire()
