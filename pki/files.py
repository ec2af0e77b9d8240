"""Writing PKI files safely: atomically, and with the mode set when the file is created.

Called by :mod:`pki.keys`, :mod:`pki.cacerts`, :mod:`pki.rootdir` and the ``isthmus pki``
commands. A file is written to a fresh temporary name in its directory (created ``O_EXCL`` with
its final mode, so a private key is never readable by others, not even for an instant), flushed
to disk, then renamed over the target. A reader sees the old file or the new one, never half.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


def write_file(path: Path, data: bytes, *, mode: int = PUBLIC_MODE) -> None:
    """Atomically replace ``path`` with ``data``; the new file is created with ``mode``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically write a secret (a private key) readable by its owner only."""
    write_file(path, data, mode=PRIVATE_MODE)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700 if it does not exist yet."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
