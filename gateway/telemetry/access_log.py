"""The access log: one JSON line per request, written off the event loop.

The proxy holds an ``AccessLogger | None``; ``None`` (no ``telemetry.accessLog`` in the
config) means it does no access-log work at all. Per finished request it builds an
:class:`~gateway.telemetry.access_entry.AccessLogEntry` and calls :meth:`AccessLogger.log`.

What happens where:

- **On the event loop** (:meth:`AccessLogger.log`): the sampling decision and a ``put`` on a
  bounded queue. Nothing is encoded or written, and nothing waits: when the queue is full
  (the disk or the reader of standard output cannot keep up) the entry is dropped and
  counted in :attr:`AccessLogger.dropped`.
- **On the writer thread**: take what is queued (up to ``batch_max`` entries), encode it with
  msgspec as JSON lines in one call, and write it with one ``write`` (see
  :mod:`gateway.telemetry.access_sink`). :attr:`AccessLogger.written` counts lines written;
  :attr:`AccessLogger.failed` counts entries lost to a write error (disk full, reader gone) or
  to a value that cannot be encoded. The thread survives both; a failure is reported once
  on the ``gateway.telemetry.access_log`` logger until writes succeed again.

Sampling: ``sampling_percent`` of requests are logged, chosen at random per request. So that
sampling never hides a failure, a request that ended with a 5xx status or any response flag
is always logged (``always_log_errors``, on by default; ``ProxySettings`` has no field for it
yet, so turning it off is a constructor argument). At 100 % no random number is drawn.

Log rotation: after the file is renamed, :meth:`AccessLogger.reopen` (bound to SIGHUP, say)
makes the writer open the path again. It is queued behind the entries already logged, so
they go to the old file and later ones to the new file.

Lifecycle: create the logger in each worker process (after any fork: the writer thread does
not survive a fork). :meth:`AccessLogger.close` writes everything queued, then stops the
thread; it blocks, so on the event loop use ``await logger.aclose()``. Counters are plain
ints read by the metrics code at scrape time.

Import everything access-log from here: the entry, the flags helper and the request id.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import queue
import random
import threading
from collections.abc import Callable

import msgspec

from gateway.config.snapshot import AccessLog
from gateway.telemetry.access_entry import AccessLogEntry, format_start_time
from gateway.telemetry.access_flags import NO_FLAGS, join_flags
from gateway.telemetry.access_request_id import ensure_request_id, new_request_id
from gateway.telemetry.access_sink import FileSink, Sink

__all__ = [
    "AccessLogEntry",
    "AccessLogError",
    "AccessLogger",
    "ensure_request_id",
    "format_start_time",
    "join_flags",
    "new_request_id",
]

_log = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE = 8192  # entries; a few MiB at most
DEFAULT_BATCH_MAX = 512  # entries per write
FLUSH_INTERVAL_S = 0.1  # the longest an entry waits on the deque before it is written


class AccessLogError(Exception):
    """The access log cannot start: a bad setting or a file that cannot be opened."""


class _Control:
    """An instruction for the writer thread. ``at`` is how many entries had been logged
    when it was given: the writer carries it out after writing exactly those."""

    __slots__ = ("at", "done", "kind")

    def __init__(self, kind: str, at: int) -> None:
        self.kind = kind  # "reopen", "flush" or "close"
        self.at = at
        self.done = threading.Event()


class AccessLogger:
    """JSON-lines access log with a bounded queue and one writer thread."""

    __slots__ = (
        "_always_errors",
        "_appended",
        "_closed",
        "_controls",
        "_entries",
        "_percent",
        "_random",
        "_sink",
        "_taken",
        "_thread",
        "_wake",
        "batch_max",
        "dropped",
        "failed",
        "max_queue",
        "reopen_errors",
        "written",
    )  # fmt: skip

    def __init__(
        self,
        sink: Sink,
        *,
        sampling_percent: float = 100.0,
        always_log_errors: bool = True,
        max_queue: int = DEFAULT_MAX_QUEUE,
        batch_max: int = DEFAULT_BATCH_MAX,
        rand: Callable[[], float] = random.random,
    ) -> None:
        """``rand`` returns a float in [0, 1); a request is sampled when
        ``rand() * 100 < sampling_percent``. The sink is owned (closed by :meth:`close`)."""
        if not (math.isfinite(sampling_percent) and 0.0 <= sampling_percent <= 100.0):
            raise AccessLogError(
                "telemetry.accessLog.samplingPercentage must be between 0 and 100, "
                f"got {sampling_percent!r}"
            )
        if max_queue < 1 or batch_max < 1:
            raise AccessLogError(
                f"max_queue ({max_queue}) and batch_max ({batch_max}) must be >= 1"
            )
        self._sink = sink
        self._percent = float(sampling_percent)
        self._always_errors = always_log_errors
        self._random = rand
        self.max_queue = max_queue
        self.batch_max = batch_max
        # Entries go on a deque (append and popleft are atomic) without waking the writer:
        # waking a thread per request makes the two fight over the GIL and costs more than
        # the logging itself. The writer wakes every ``FLUSH_INTERVAL_S``, or at once when a
        # batch is full or a control message (flush, reopen, close) arrives.
        self._entries: collections.deque[AccessLogEntry] = collections.deque()
        self._controls: queue.SimpleQueue[_Control] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._appended = 0  # entries put on the deque (by the logging thread)
        self._taken = 0  # entries taken off it (by the writer)
        self._closed = False
        # Counters, for metrics. ``dropped`` is written only by the logging thread,
        # ``written``, ``failed`` and ``reopen_errors`` only by the writer thread.
        self.dropped = 0
        self.written = 0
        self.failed = 0
        self.reopen_errors = 0
        self._thread = threading.Thread(target=self._run, name="isthmus-access-log", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(
        cls,
        config: AccessLog | None,
        *,
        always_log_errors: bool = True,
        max_queue: int = DEFAULT_MAX_QUEUE,
        batch_max: int = DEFAULT_BATCH_MAX,
        rand: Callable[[], float] = random.random,
    ) -> AccessLogger | None:
        """The logger for ``telemetry.accessLog``, or ``None`` when it is not configured.
        Opens the file now, so that a bad path fails at load with a clear error."""
        if config is None:
            return None
        try:
            sink = FileSink(config.path)
        except OSError as e:
            raise AccessLogError(
                f"telemetry.accessLog.path: cannot open {config.path!r}: {e.strerror or e}"
            ) from e
        try:
            return cls(sink, sampling_percent=config.sampling_percent,
                       always_log_errors=always_log_errors, max_queue=max_queue,
                       batch_max=batch_max, rand=rand)  # fmt: skip
        except BaseException:
            sink.close()
            raise

    # --- the hot path (event loop) ---------------------------------------------------

    def wants(self, response_code: int, response_flags: str) -> bool:
        """The sampling decision alone, for a caller that would rather not build an entry
        that will not be logged; then hand the entry to :meth:`emit`."""
        percent = self._percent
        if percent >= 100.0:
            return True
        if self._always_errors and (response_code >= 500 or response_flags != NO_FLAGS):
            return True
        return self._random() * 100.0 < percent

    def log(self, entry: AccessLogEntry) -> None:
        """Sample ``entry`` and queue it for writing. Never blocks, never raises."""
        percent = self._percent
        if percent < 100.0 and not (
            (self._always_errors and (entry.response_code >= 500
                                      or entry.response_flags != NO_FLAGS))
            or self._random() * 100.0 < percent
        ):  # fmt: skip
            return
        self.emit(entry)

    def emit(self, entry: AccessLogEntry) -> None:
        """Queue ``entry`` without sampling it (after :meth:`wants`); drop and count it
        if the queue is full or the logger is closed. Never blocks, never raises."""
        entries = self._entries
        # One producer thread (the event loop) cannot overshoot the bound: the writer only
        # ever shrinks the deque between this check and the append.
        n = len(entries)
        if n >= self.max_queue or self._closed:
            self.dropped += 1
            return
        entries.append(entry)
        self._appended += 1
        if n + 1 == self.batch_max:
            self._wake.set()

    def reopen(self) -> None:
        """Ask the writer to reopen the file, after the entries already queued. Returns at
        once; safe from a signal handler on the loop. Standard output is left as it is."""
        if not self._closed:
            self._controls.put(_Control("reopen", self._appended))
            self._wake.set()

    # --- control (blocking: not on the event loop) ----------------------------------

    @property
    def queued(self) -> int:
        """Entries (and instructions) waiting for the writer."""
        return len(self._entries) + self._controls.qsize()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything queued so far is written; ``False`` on timeout."""
        if self._closed:
            return not self._thread.is_alive()
        marker = _Control("flush", self._appended)
        self._controls.put(marker)
        self._wake.set()
        return marker.done.wait(timeout_s)

    def close(self, timeout_s: float | None = None) -> bool:
        """Stop taking entries, write everything queued, close the sink and end the thread.
        ``False`` when the thread did not finish within ``timeout_s`` (a sink that blocks);
        the entries still queued are then lost with the process. Idempotent."""
        if not self._closed:
            self._closed = True
            self._controls.put(_Control("close", self._appended))
            self._wake.set()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    async def aclose(self, timeout_s: float | None = None) -> bool:
        """:meth:`close` on a worker thread, for callers on the event loop."""
        return await asyncio.to_thread(self.close, timeout_s)

    # --- the writer thread ----------------------------------------------------------

    def _run(self) -> None:
        encoder = msgspec.json.Encoder()
        failing = False
        while True:
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            while True:
                try:
                    control = self._controls.get_nowait()
                except queue.Empty:
                    break
                # Exactly what was logged before the control message is written first.
                failing = self._drain(encoder, failing, control.at - self._taken)
                if control.kind == "reopen":
                    try:
                        self._sink.reopen()
                    except Exception as e:
                        self.reopen_errors += 1
                        _log.error("access log: reopen failed, still writing the old file: %s", e)
                elif control.kind == "close":
                    try:
                        self._sink.close()
                    except Exception as e:
                        _log.error("access log: close failed: %s", e)
                    control.done.set()
                    while True:  # flushes asked for after close have nothing left to wait for
                        try:
                            self._controls.get_nowait().done.set()
                        except queue.Empty:
                            return
                control.done.set()
            failing = self._drain(encoder, failing, len(self._entries))

    def _drain(self, encoder: msgspec.json.Encoder, failing: bool, count: int) -> bool:
        """Write the next ``count`` entries of the deque (fewer if it has fewer), in
        batches."""
        popleft = self._entries.popleft
        while count > 0:
            batch: list[AccessLogEntry] = []
            try:
                for _ in range(min(count, self.batch_max)):
                    batch.append(popleft())
            except IndexError:
                count = 0
            self._taken += len(batch)
            count -= len(batch)
            if batch:
                failing = self._write(encoder, batch, failing)
        return failing

    def _write(self, encoder: msgspec.json.Encoder, batch: list[AccessLogEntry],
               failing: bool) -> bool:  # fmt: skip
        """Write one batch; returns whether the log is now failing (to report once)."""
        try:
            data = encoder.encode_lines(batch)
        except (TypeError, ValueError, msgspec.EncodeError):
            data = self._encode_each(encoder, batch)
            if not data:
                return failing
        lines = data.count(b"\n")
        try:
            self._sink.write(data)
        except Exception as e:  # the thread must outlive any sink failure
            self.failed += lines
            if not failing:
                _log.error("access log: write failed, dropping entries until it works: %r", e)
            return True
        self.written += lines
        if failing:
            _log.warning("access log: writing again")
        return False

    def _encode_each(self, encoder: msgspec.json.Encoder, batch: list[AccessLogEntry]) -> bytes:
        """The lines of the entries that encode; the others are counted and reported."""
        out = bytearray()
        for entry in batch:
            try:
                out += encoder.encode(entry)
            except (TypeError, ValueError, msgspec.EncodeError) as e:
                self.failed += 1
                _log.error("access log: entry cannot be encoded, dropped: %s", e)
                continue
            out += b"\n"
        return bytes(out)
