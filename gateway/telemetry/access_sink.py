"""Where access-log lines go: standard output or a file opened for appending.

A :class:`Sink` is only ever used by the access logger's writer thread, so it may block.
:class:`FileSink` writes with ``os.write`` on a file descriptor:

- A file is opened with ``O_APPEND``, so that several workers can share it: each batch is one
  ``write`` and lands whole at the end of the file.
- When the descriptor is a pipe (a container runtime reading standard output), a batch is
  written in pieces of at most ``PIPE_BUF`` bytes cut at line ends, because only writes that
  small are atomic on a pipe; so lines from several workers never interleave. A single line
  longer than that cannot be protected.
- A non-blocking descriptor (another library may have set ``O_NONBLOCK`` on a shared standard
  output) is waited on with ``poll`` rather than failing.
- :meth:`FileSink.reopen` opens the path again for log rotation (rename, then reopen). It
  opens the new file before closing the old one, so a failure keeps the old file in use.

Called by :mod:`gateway.telemetry.access_log` (and by tests that inject their own sink).
"""

from __future__ import annotations

import os
import select
import stat
from typing import Protocol

STDOUT = "-"
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_PIPE_BUF: int = getattr(select, "PIPE_BUF", 512)


class Sink(Protocol):
    """What the writer thread writes to. Every method may block and may raise ``OSError``."""

    def write(self, data: bytes) -> None:
        """Write all of ``data``, a whole number of lines."""

    def reopen(self) -> None:
        """Start writing to a fresh open of the same destination (log rotation)."""

    def close(self) -> None: ...


class FileSink:
    """Appends to a file, or writes to an already open descriptor such as standard output."""

    __slots__ = ("_fd", "_owned", "_pipe", "path")

    def __init__(self, path: str) -> None:
        """Open ``path`` for appending (created with mode 0644 if missing); ``-`` is standard
        output. Raises ``OSError`` when the file cannot be opened."""
        self.path = path
        if path == STDOUT:
            self._fd = 1
            self._owned = False
        else:
            self._fd = os.open(path, _OPEN_FLAGS, 0o644)
            self._owned = True
        self._pipe = _is_pipe(self._fd)

    @classmethod
    def for_fd(cls, fd: int, *, owned: bool = False) -> FileSink:
        """A sink on an open descriptor; ``owned`` closes it with the sink."""
        sink = cls.__new__(cls)
        sink.path = STDOUT
        sink._fd = fd
        sink._owned = owned
        sink._pipe = _is_pipe(fd)
        return sink

    def write(self, data: bytes) -> None:
        if self._pipe and len(data) > _PIPE_BUF:
            for piece in _pieces(data, _PIPE_BUF):
                _write_all(self._fd, piece)
        else:
            _write_all(self._fd, data)

    def reopen(self) -> None:
        if not self._owned or self.path == STDOUT:
            return
        fd = os.open(self.path, _OPEN_FLAGS, 0o644)
        old, self._fd = self._fd, fd
        self._pipe = _is_pipe(fd)
        os.close(old)

    def close(self) -> None:
        if self._owned and self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


def _is_pipe(fd: int) -> bool:
    return stat.S_ISFIFO(os.fstat(fd).st_mode)


def _pieces(data: bytes, limit: int) -> list[memoryview]:
    """``data`` cut at line ends into pieces of at most ``limit`` bytes where possible."""
    view = memoryview(data)
    out: list[memoryview] = []
    start, end = 0, len(data)
    while start < end:
        stop = start + limit
        if stop >= end:
            out.append(view[start:])
            break
        cut = data.rfind(b"\n", start, stop)
        if cut < 0:  # one line longer than the limit: it goes whole
            cut = data.find(b"\n", stop)
            if cut < 0:
                cut = end - 1
        out.append(view[start : cut + 1])
        start = cut + 1
    return out


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            poller.poll()
            continue
        view = view[n:]
