"""The validated objects of a configuration directory, before compilation.

``gateway.config.loader`` produces :class:`Resources`; ``gateway.config.compile`` reads it.
Each object remembers the file and line it came from, so that problems found while compiling
(a port conflict, say) can point at the YAML like the loader's own problems do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from gateway.config.errors import Problem
from gateway.config.kinds.meta import Object

T = TypeVar("T", bound=Object)
D = TypeVar("D")


class ObjectKey(NamedTuple):
    """What makes an object unique. ``namespace`` is empty for cluster-scoped kinds."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        if self.namespace:
            return f"{self.kind} {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"


def key_of(obj: Object) -> ObjectKey:
    return ObjectKey(obj.kind_name, obj.namespace, obj.name)


_LAST_SEGMENT = re.compile(r'(\.[^.\[\]"]+|\[\d+\]|\["[^"]*"\]|^[^.\[\]"]+)$')


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an object was read: its file, its first line, and the line of each field path."""

    file: str
    line: int | None
    lines: Mapping[str, int] = field(default_factory=dict)

    def line_of(self, path: str) -> int | None:
        """The line of ``path``, or of its nearest enclosing field that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            last = _LAST_SEGMENT.search(path)
            if last is None:
                break
            path = path[: last.start()]
        return self.line

    def __str__(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Resources:
    """Every loaded object, sorted by (kind, namespace, name), and where each came from."""

    objects: tuple[Object, ...] = ()
    origins: Mapping[ObjectKey, Origin] = field(default_factory=dict)
    # of_kind's answers: a compilation asks for each kind several times, and a controller's
    # store holds tens of thousands of objects, so they are sorted by type in one pass.
    _by_type: dict[type, list[Object]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _by_kind: dict[type, tuple[Object, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # Indexes that compilers derive from the objects alone (see :meth:`derived`).
    _derived: dict[str, object] = field(default_factory=dict, init=False, repr=False, compare=False)

    def of_kind(self, cls: type[T]) -> tuple[T, ...]:
        found = self._by_kind.get(cls)
        if found is None:
            by_type = self._by_type
            if not by_type and self.objects:
                for obj in self.objects:
                    by_type.setdefault(type(obj), []).append(obj)
            matching = [t for t in by_type if issubclass(t, cls)]
            if not matching:
                found = ()
            elif len(matching) == 1:
                found = tuple(by_type[matching[0]])
            else:  # keep the objects' order across the types
                found = tuple(o for o in self.objects if isinstance(o, cls))
            self._by_kind[cls] = found
        return found  # type: ignore[return-value]  # every item is a cls

    def derived(self, name: str, build: Callable[[Resources], D]) -> D:
        """``build(self)``, computed once per :class:`Resources` (which never changes): for
        indexes that several steps of a compilation need, such as Services by name."""
        found = self._derived.get(name)
        if found is None:
            found = self._derived[name] = build(self)
        return found  # type: ignore[return-value]  # each name is always built by one builder

    def problem(self, obj: Object, path: str, message: str) -> Problem:
        """A problem about ``obj``, located at the file and line it was loaded from."""
        key = key_of(obj)
        origin = self.origins.get(key, Origin("<unknown>", None))
        return Problem(origin.file, message, obj=str(key), path=path, line=origin.line_of(path))
