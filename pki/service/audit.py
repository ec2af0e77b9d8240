"""The CA service's audit log: one JSON line per issuance and per refusal.

The CA service (:mod:`pki.service.app`) calls :meth:`AuditLog.record` once per request to
``POST /v1/certificates``. Lines go to a file (appended, created with mode 0600) or to stdout.
The event loop never writes: :meth:`record` puts the line on a queue and a writer thread writes
and flushes it, so a slow disk delays the log, not the answers. :meth:`close` (the server's
shutdown) writes every queued line before returning.

Each line: ``time`` (RFC 3339, UTC), ``outcome`` (``issued`` or ``refused``), ``status`` (the
HTTP status), ``reason`` (a stable error code, on refusals), ``message``, ``identity`` (the
token's subject), ``spiffe_id`` (the one requested), ``serial`` (hex), ``not_after``, ``client``
(``host:port``). Fields that do not apply are ``null``.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import queue
import sys
import threading
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

_STOP = object()


class AuditLog:
    """Writes audit lines to ``path`` (or stdout when ``path`` is None) from a thread."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._out: IO[str]
        if path is None:
            self._out = sys.stdout
            self._owned = False
        else:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._out = os.fdopen(fd, "a", encoding="utf-8")
            self._owned = True
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="isthmus-ca-audit", daemon=True)
        self._thread.start()
        self._closed = False

    def record(self, **fields: Any) -> None:
        """Queue one line; ``time`` is added. Never blocks, never raises on a bad disk."""
        line = {"time": _now(), **fields}
        self._queue.put(json.dumps(line, separators=(",", ":"), default=str))

    def close(self) -> None:
        """Write what is queued, stop the thread, close the file."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        if self._owned:
            self._out.close()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            stop = False
            while True:  # drain what else is queued, then flush once
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            try:
                self._out.write("".join(f"{line}\n" for line in batch))
                self._out.flush()
            except (OSError, ValueError) as exc:
                log.error("audit log: cannot write %d lines: %s", len(batch), exc)
            if stop:
                return


def _now() -> str:
    return (
        datetime.datetime.now(datetime.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
