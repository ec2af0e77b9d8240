"""Token buckets shared by the worker processes of one proxy.

``gateway.filters.rate_limit`` keeps its buckets here, so that a limit holds across
``--workers N``: the kernel spreads connections over the workers (``SO_REUSEPORT``), and a
bucket per worker would let N times the limit through. The supervisor
(``gateway.process.supervisor``) creates the table with :func:`shared_for_workers` before it
starts the workers, hands its path down in the environment variable :data:`ENV_VAR`, and
removes it when it exits. Each worker opens it once (:func:`process_table`).

Why our own: no maintained library does cross-process token buckets in Python, and
``multiprocessing.shared_memory`` (3.11) registers every attaching process with a resource
tracker that unlinks the segment when that process exits. A plain file in ``/dev/shm``,
mapped with ``mmap`` and locked with POSIX byte-range locks, has none of that: a worker that
dies releases its locks, and the supervisor alone decides when the file goes.

Layout: a 64-byte header (magic, slot count), then fixed 40-byte slots: a 16-byte BLAKE2b
digest of the key (all zero: free), the tokens, the time of the last fill and the time the
bucket will be full again (``CLOCK_MONOTONIC`` seconds, the same clock in every process). A
key hashes to a window of :data:`WINDOW` consecutive slots; one ``lockf`` on the window's
bytes guards the read-modify-write, a few microseconds. A key not in its window takes a free
slot, else the slot that is full again soonest (taking a bucket that is already full loses
nothing; taking one that is not lets that key start full again, which only a full window of
busier keys can cause).

When the table cannot be shared (no supervisor, or the file cannot be opened) a private
in-memory table is used and the limit holds per process; this is logged once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import math
import mmap
import os
import secrets
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

log = logging.getLogger("isthmus.ratelimit")

ENV_VAR = "ISTHMUS_RATELIMIT_TABLE"
FILE_PREFIX = "isthmus-ratelimit-"
DEFAULT_SLOTS = 16384
WINDOW = 8

_MAGIC = b"ISTHMUS-RATELIMIT-1\x00"
_HEADER = struct.Struct("<20sI")
_HEADER_BYTES = 64
_SLOT = struct.Struct("<16sddd")  # digest, tokens, last_fill, full_at
_FREE = bytes(16)


@dataclass(frozen=True, slots=True)
class Bucket:
    """A bucket's shape: ``max_tokens``, gaining ``tokens_per_fill`` every ``fill_interval_s``."""

    max_tokens: int
    tokens_per_fill: int
    fill_interval_s: float


class Decision(NamedTuple):
    """``remaining`` whole tokens after the request; ``reset_s`` until the next fill (0 when the
    bucket is full)."""

    allowed: bool
    remaining: int
    reset_s: float


def refill(tokens: float, last_fill: float, now: float, bucket: Bucket) -> tuple[float, float]:
    """The tokens and last fill time at ``now``: whole fills since ``last_fill`` are added, up
    to ``max_tokens``; the fill schedule keeps its phase."""
    interval = bucket.fill_interval_s
    if now - last_fill < interval:
        return tokens, last_fill
    fills = math.floor((now - last_fill) / interval)
    tokens = min(float(bucket.max_tokens), tokens + fills * bucket.tokens_per_fill)
    return tokens, last_fill + fills * interval


def full_at(tokens: float, last_fill: float, bucket: Bucket) -> float:
    """When the bucket will be full again if nothing takes from it."""
    missing = bucket.max_tokens - tokens
    if missing <= 0:
        return last_fill
    return last_fill + math.ceil(missing / bucket.tokens_per_fill) * bucket.fill_interval_s


def decide(
    tokens: float, last_fill: float, now: float, bucket: Bucket, *, take: bool
) -> tuple[Decision, float, float]:
    """Refill, then take one token when ``take`` and one is there. Returns the decision and
    the new tokens and last fill time."""
    tokens, last_fill = refill(tokens, last_fill, now, bucket)
    allowed = tokens >= 1.0
    if take and allowed:
        tokens -= 1.0
    reset = (
        0.0 if tokens >= bucket.max_tokens else max(0.0, last_fill + bucket.fill_interval_s - now)
    )
    return Decision(allowed, int(tokens), reset), tokens, last_fill


def digest(key: bytes) -> bytes:
    """The 16-byte slot key of ``key`` (never all zero in practice)."""
    return hashlib.blake2b(key, digest_size=16).digest()


class BucketTable:
    """A slot table over a mapped buffer. ``fd`` is the mapped file, whose byte ranges are
    locked around each update; ``None`` for a private table (one process, no lock)."""

    __slots__ = ("_buf", "_fd", "_slots", "path", "shared")

    def __init__(self, buf: mmap.mmap, slots: int, fd: int | None, path: str = "") -> None:
        if slots < WINDOW:
            raise ValueError(f"a bucket table needs at least {WINDOW} slots, got {slots}")
        self._buf = buf
        self._slots = slots
        self._fd = fd
        self.shared = fd is not None
        self.path = path

    @classmethod
    def private(cls, slots: int = DEFAULT_SLOTS) -> BucketTable:
        """A table in this process's memory only."""
        return cls(mmap.mmap(-1, table_bytes(slots)), slots, None)

    @classmethod
    def open(cls, path: str) -> BucketTable:
        """Map the table file made by :func:`create_file`. Raises ``OSError`` or
        ``ValueError`` when it is missing or not a table."""
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            head = os.pread(fd, _HEADER.size, 0)
            if len(head) != _HEADER.size:
                raise ValueError(f"{path} is not a rate limit table (too short)")
            magic, slots = _HEADER.unpack(head)
            if magic != _MAGIC or os.fstat(fd).st_size != table_bytes(slots):
                raise ValueError(f"{path} is not a rate limit table")
            buf = mmap.mmap(fd, table_bytes(slots), mmap.MAP_SHARED)
        except BaseException:
            os.close(fd)
            raise
        return cls(buf, slots, fd, path)

    def close(self) -> None:
        self._buf.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def take(self, key: bytes, bucket: Bucket, now: float) -> Decision:
        """Take a token from ``key``'s bucket if it has one."""
        return self._update(digest(key), bucket, now, take=True)

    def peek(self, key: bytes, bucket: Bucket, now: float) -> Decision:
        """The state of ``key``'s bucket, taking nothing (an unknown key is full)."""
        return self._update(digest(key), bucket, now, take=False)

    def _update(self, key: bytes, bucket: Bucket, now: float, *, take: bool) -> Decision:
        first = int.from_bytes(key[:8], "little") % (self._slots - WINDOW + 1)
        start = _HEADER_BYTES + first * _SLOT.size
        length = WINDOW * _SLOT.size
        self._lock(fcntl.LOCK_EX, start, length)
        try:
            return self._update_locked(key, bucket, now, start, take)
        finally:
            self._lock(fcntl.LOCK_UN, start, length)

    def _update_locked(
        self, key: bytes, bucket: Bucket, now: float, start: int, take: bool
    ) -> Decision:
        buf = self._buf
        found = free = victim = -1
        victim_full_at = math.inf
        for i in range(WINDOW):
            offset = start + i * _SLOT.size
            slot_key, _tokens, _last, slot_full_at = _SLOT.unpack_from(buf, offset)
            if slot_key == key:
                found = offset
                break
            if slot_key == _FREE:
                if free < 0:
                    free = offset
            elif slot_full_at < victim_full_at:
                victim, victim_full_at = offset, slot_full_at
        if found >= 0:
            _, tokens, last_fill, _ = _SLOT.unpack_from(buf, found)
            offset = found
        else:
            tokens, last_fill = float(bucket.max_tokens), now
            if not take:
                return decide(tokens, last_fill, now, bucket, take=False)[0]
            offset = free if free >= 0 else victim
        decision, tokens, last_fill = decide(tokens, last_fill, now, bucket, take=take)
        _SLOT.pack_into(buf, offset, key, tokens, last_fill, full_at(tokens, last_fill, bucket))
        return decision

    def _lock(self, op: int, start: int, length: int) -> None:
        if self._fd is None:
            return
        try:
            fcntl.lockf(self._fd, op, length, start)
        except OSError as exc:  # pragma: no cover - lockf on a local file does not fail
            log.warning("rate limit table lock failed (%s); updating without it", exc)

    def __repr__(self) -> str:
        where = self.path if self.shared else "private"
        return f"<BucketTable {where} slots={self._slots}>"


def table_bytes(slots: int) -> int:
    return _HEADER_BYTES + slots * _SLOT.size


def create_file(path: str, slots: int = DEFAULT_SLOTS) -> None:
    """Make an empty table file at ``path`` (which must not exist), readable by us only."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, table_bytes(slots))
        os.pwrite(fd, _HEADER.pack(_MAGIC, slots), 0)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def run_directory() -> str:
    """Where table files go: ``/dev/shm`` (memory) when usable, else the temp directory."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return tempfile.gettempdir()


def sweep_stale(directory: str) -> list[str]:
    """Remove our table files whose supervisor is gone (one killed with SIGKILL leaves its
    file behind). Returns the paths removed."""
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(FILE_PREFIX):
            continue
        pid_text = name[len(FILE_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        path = os.path.join(directory, name)
        with contextlib.suppress(OSError):
            if os.stat(path).st_uid == os.getuid():
                os.unlink(path)
                removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def shared_for_workers(
    directory: str | None = None, slots: int = DEFAULT_SLOTS
) -> Iterator[str | None]:
    """For the supervisor: create a table, export its path to the processes started inside
    the block (through :data:`ENV_VAR`), and remove it afterwards. Yields the path, or None
    when the table could not be made (the workers then limit per process)."""
    directory = directory or run_directory()
    sweep_stale(directory)
    path = os.path.join(directory, f"{FILE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        create_file(path, slots)
    except OSError as exc:
        log.warning("cannot create the rate limit table in %s (%s); limits are per worker",
                    directory, exc)  # fmt: skip
        yield None
        return
    previous = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = previous
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


_process_table: BucketTable | None = None


def process_table() -> BucketTable:
    """This process's table: the supervisor's shared one when :data:`ENV_VAR` names it, else
    a private one. Opened once, on first use."""
    global _process_table
    if _process_table is None:
        _process_table = _open_process_table()
    return _process_table


def _open_process_table() -> BucketTable:
    path = os.environ.get(ENV_VAR)
    if not path:
        log.info("no shared rate limit table (%s is unset); limits hold per process", ENV_VAR)
        return BucketTable.private()
    try:
        return BucketTable.open(path)
    except (OSError, ValueError) as exc:
        log.warning("cannot open the rate limit table %s (%s); limits hold per process",
                    path, exc)  # fmt: skip
        return BucketTable.private()
