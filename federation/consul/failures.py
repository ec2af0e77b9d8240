"""``FailureLog``: log a failing loop once, remind now and then, and say when it recovers.

Used by the loops of ``export`` and ``leader``, which retry every fraction of a second
while Consul is away: one warning when a loop starts failing, a reminder at most every
``remind_s``, every other error at debug level, and one line when it works again.
"""

from __future__ import annotations

import logging
import time


class FailureLog:
    def __init__(self, log: logging.Logger, what: str, remind_s: float = 30.0) -> None:
        self.log = log
        self.what = what
        self.remind_s = remind_s
        self.count = 0
        self._since: float | None = None
        self._last_said = 0.0

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self.count += 1
        if self._since is None:
            self._since = self._last_said = now
            self.log.warning("%s failed, retrying: %s", self.what, exc)
        elif now - self._last_said >= self.remind_s:
            self._last_said = now
            self.log.warning(
                "%s still failing after %.0fs (%d errors): %s",
                self.what,
                now - self._since,
                self.count,
                exc,
            )
        else:
            self.log.debug("%s failed again: %s", self.what, exc)

    def ok(self) -> None:
        if self._since is not None:
            self.log.info(
                "%s works again after %.1fs (%d errors)",
                self.what,
                time.monotonic() - self._since,
                self.count,
            )
        self._since = None
        self.count = 0
