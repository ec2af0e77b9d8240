"""``wait_at_most``: await something for at most a while, and stay cancellable.

Used by the loops of ``export``. It is ``asyncio.timeout``, never Python 3.11's
``asyncio.wait_for``, which can swallow a cancellation that arrives as the awaited thing
completes and so leave a ``while True`` loop running after its task was cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


async def wait_at_most(aw: Awaitable[object], seconds: float) -> bool:
    """Await ``aw`` for at most ``seconds``; True if it finished."""
    try:
        async with asyncio.timeout(seconds):
            await aw
    except TimeoutError:
        return False
    return True
