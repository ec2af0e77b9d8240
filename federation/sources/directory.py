"""The directory source (``isthmus federation run --source DIR``): the same kinds, from YAML files.

For local runs without a cluster. Every ``*.yaml``/``*.yml`` file under the directory is read
(recursively, in sorted order, hidden files and directories skipped, as
``gateway.config.loader`` does); a file may hold several documents and ``kind: List``
documents. The kinds are those of ``federation.sources.kinds`` (the proxy's configuration
kinds, ``ServiceExport``, ``Pod``, ``Node``).

The directory is polled: a cheap fingerprint (names, sizes, modification times, like
``gateway.process.sources.DirectorySource``) tells whether anything changed; only changed files
are parsed again, and the result replaces this source's objects in the store (a diff: only
what changed is written). ``synced`` is reported after the first full read.

Bad input loses nothing: a file that cannot be read or parsed keeps the objects it last had
(and is reported); an object of an unknown kind or without a name is reported and skipped;
the same object in two files is kept from the first and reported. Validation of the
configuration kinds is the store's (``ObjectStore.problems``). If the directory disappears, the
store keeps its objects until it is back.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from federation.sources.kinds import BY_KIND
from federation.sources.store import ObjectStore, StoreKey, key_for
from gateway.config.errors import Problem

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Fingerprint = tuple[tuple[str, int, int], ...]


class SourceError(Exception):
    """The source cannot start (e.g. the directory does not exist)."""


@dataclass(slots=True)
class _File:
    stamp: tuple[int, int]  # size, mtime_ns
    objects: list[Obj] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class DirectorySource:
    """See the module docstring."""

    def __init__(
        self, store: ObjectStore, path: str | os.PathLike[str], *, poll_s: float = 1.0
    ) -> None:
        self.store = store
        self.path = Path(path)
        self.poll_s = poll_s
        self.name = f"directory:{self.path}"
        self.reads = 0  # full reads that found a change
        self._fingerprint: Fingerprint | None = None
        self._files: dict[str, _File] = {}
        self._task: asyncio.Task[None] | None = None
        if not self.path.is_dir():
            raise SourceError(f"{self.path}: not a directory")

    def __repr__(self) -> str:
        return f"<DirectorySource {self.path} [{len(self._files)} files | {self.reads} reads]>"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Read the directory, then poll it, in a task (call from the event loop)."""
        self.store.expect(self.name)
        self._task = asyncio.get_running_loop().create_task(self._poll(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def run(self) -> None:
        """Start, then run until cancelled."""
        self.start()
        try:
            assert self._task is not None
            await asyncio.shield(self._task)
        finally:
            await self.stop()

    async def _poll(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # keep polling: the next change may fix it
                log.exception("reading %s failed", self.path)
            await asyncio.sleep(self.poll_s)

    async def refresh(self) -> bool:
        """Read what changed since the last call and apply it; returns whether it read."""
        result = await asyncio.to_thread(self._read)
        if result is None:
            self.store.mark_synced(self.name)
            return False
        objects, problems = result
        self.store.set_source_problems(self.name, problems)
        self.store.replace(BY_KIND, objects, source=self.name)
        self.store.mark_synced(self.name)
        self.reads += 1
        return True

    # -- reading (in a worker thread) -------------------------------------------------------

    def _read(self) -> tuple[list[tuple[Obj, str]], list[Problem]] | None:
        if not self.path.is_dir():
            if self._fingerprint != ():
                log.warning("%s is gone; keeping its objects until it is back", self.path)
            self._fingerprint = ()
            return None
        fingerprint = self._scan()
        if fingerprint == self._fingerprint:
            return None
        self._fingerprint = fingerprint
        files: dict[str, _File] = {}
        for name, size, mtime in fingerprint:
            old = self._files.get(name)
            if old is not None and old.stamp == (size, mtime):
                files[name] = old
            else:
                files[name] = _read_file(name, (size, mtime), old)
        self._files = files
        seen: dict[StoreKey, str] = {}
        objects: list[tuple[Obj, str]] = []
        problems: list[Problem] = []
        for name, entry in files.items():
            problems.extend(entry.problems)
            for obj in entry.objects:
                key = key_for(obj)
                if key in seen:
                    problems.append(
                        Problem(name, f"duplicate object; first defined in {seen[key]}", str(key))
                    )
                    continue
                seen[key] = name
                objects.append((obj, name))
        return objects, problems

    def _scan(self) -> Fingerprint:
        out = []
        for root, dirs, files in os.walk(self.path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in files:
                if name.startswith(".") or not name.endswith((".yaml", ".yml")):
                    continue
                path = os.path.join(root, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                out.append((path, st.st_size, st.st_mtime_ns))
        return tuple(sorted(out))


def _read_file(name: str, stamp: tuple[int, int], last: _File | None) -> _File:
    """Parse one file; on failure keep the objects it last had."""
    kept = list(last.objects) if last is not None else []
    try:
        text = Path(name).read_text(encoding="utf-8")
        documents = list(yaml.safe_load_all(text))
    except (OSError, UnicodeDecodeError) as exc:
        return _File(stamp, kept, [Problem(name, f"cannot read: {exc}")])
    except yaml.YAMLError as exc:
        line = None
        if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
            line = exc.problem_mark.line + 1
        detail = exc.problem if isinstance(exc, yaml.MarkedYAMLError) and exc.problem else exc
        message = f"invalid YAML: {detail}" + ("; keeping its last objects" if kept else "")
        return _File(stamp, kept, [Problem(name, message, line=line)])
    result = _File(stamp)
    for number, data in enumerate(documents, start=1):
        if data is None:
            continue
        if isinstance(data, dict) and data.get("kind") == "List" and data.get("apiVersion") == "v1":
            items = data.get("items")
            if not isinstance(items, list):
                result.problems.append(Problem(name, "a List needs a list of items", path="items"))
                continue
            for i, element in enumerate(items):
                _take(name, element, f"document {number} items[{i}]", result)
        else:
            _take(name, data, f"document {number}", result)
    return result


def _take(file: str, data: Any, where: str, into: _File) -> None:
    if not isinstance(data, dict):
        into.problems.append(
            Problem(file, f"{where}: expected a Kubernetes object (a mapping with apiVersion and "
                    f"kind), got {type(data).__name__}")
        )  # fmt: skip
        return
    kind = data.get("kind")
    source_kind = BY_KIND.get(kind) if isinstance(kind, str) else None
    if source_kind is None:
        known = ", ".join(sorted(BY_KIND))
        into.problems.append(
            Problem(
                file, f'{where}: unknown kind "{kind}"; the controller reads {known}', "", "kind"
            )
        )
        return
    api_version = data.get("apiVersion")
    if not source_kind.config and api_version not in source_kind.api_versions:
        into.problems.append(
            Problem(
                file,
                f'"{api_version}" is not a supported apiVersion for {kind}; use '
                f"{' or '.join(source_kind.api_versions)}",
                f"{kind} ({where})",
                "apiVersion",
            )
        )
        return
    try:
        key_for(data)
    except ValueError:
        into.problems.append(
            Problem(file, "required field is missing", f"{kind} ({where})", "metadata.name")
        )
        return
    into.objects.append(data)
