"""Where a supervisor gets its snapshots from.

:class:`DirectorySource` compiles a directory of Kubernetes YAML and notices changes by a
cheap fingerprint of file names, sizes and modification times. The control-plane source
(long-polling the federation controller) implements the same :class:`SnapshotSource`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from gateway.config.compile import load_snapshot
from gateway.config.snapshot import Snapshot


class SnapshotSource(Protocol):
    description: str

    def load(self) -> Snapshot:
        """Compile the current configuration; raises ConfigError when it is invalid."""
        ...

    def changed(self) -> bool:
        """Whether ``load`` might now return something new."""
        ...


class DirectorySource:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.description = f"directory {self.path}"
        self._fingerprint: tuple[tuple[str, int, int], ...] | None = None

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        out = []
        for root, _dirs, files in os.walk(self.path):
            for name in files:
                if name.endswith((".yaml", ".yml")):
                    p = os.path.join(root, name)
                    try:
                        st = os.stat(p)
                    except FileNotFoundError:
                        continue
                    out.append((p, st.st_size, st.st_mtime_ns))
        return tuple(sorted(out))

    def load(self) -> Snapshot:
        fp = self._scan()
        snap = load_snapshot(self.path)
        self._fingerprint = fp
        return snap

    def changed(self) -> bool:
        return self._scan() != self._fingerprint
