"""Cycle-collector settings for processes that build a large, long-lived state.

Used by the federation controller and the embedded catalog (``isthmus federation run``,
``isthmus catalog serve``), which hold tens of thousands of objects read from their peers.
"""

from __future__ import annotations

import gc

# Young collections every 50,000 allocations instead of CPython's 700.
YOUNG_THRESHOLD = 50_000


def tune_for_large_state() -> None:
    """Move what is alive now (the imported modules) out of the collector's reach, and
    collect the young generation less often. Reading a large cluster allocates hundreds of
    thousands of containers that all stay alive; with the defaults the collector walks them
    again and again (a quarter of a controller's listing time at 10,000 services)."""
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 10)
